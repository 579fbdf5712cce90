/* curfew-bench phase: N blockers of one phase, finished from T threads
 * after random delays up to D ms, against the floor (the same threads and
 * an atomic counter) and the sequential way (one observer after another,
 * each waiting for its own work).
 *
 * SPDX-License-Identifier: MIT
 *
 * The "work" is the same everywhere: blocker i is due delay[i] after the
 * wait starts (t0, just before curfew_begin). T threads own the blockers
 * (i % T), sorted by due time; each sleeps until the next due time and
 * finishes every blocker due by then. The delays come from the generator
 * the Go and Rust peers share, so every program waits for the same work.
 */
#include "bench.h"

#include <curfew.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MODE_CURFEW, MODE_FLOOR };

typedef struct run run;

typedef struct worker {
    run *r;
    pthread_t th;
    uint32_t *idx;     /* this thread's blockers, by due time */
    int64_t *due;      /* their delays, in that order */
    curfew_blocker *h; /* their handles, in that order */
    size_t n;
} worker;

struct run {
    int mode;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;
    int64_t t0;
    atomic_size_t left;   /* MODE_FLOOR: blockers not finished */
    int floor_wr;         /* MODE_FLOOR: written once by the last one */
    atomic_size_t errors; /* curfew_blocker_done() that did not return 0 */
};

static void *worker_main(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    pthread_mutex_lock(&r->mu);
    while (!r->go)
        pthread_cond_wait(&r->cv, &r->mu);
    int64_t t0 = r->t0;
    pthread_mutex_unlock(&r->mu);

    int64_t now = bench_now_ns();
    for (size_t k = 0; k < w->n; k++) {
        int64_t due = t0 + w->due[k];
        if (due > now) {
            now = bench_now_ns();
            if (due > now) {
                bench_sleep_until_ns(due);
                now = bench_now_ns();
            }
        }
        if (r->mode == MODE_CURFEW) {
            if (curfew_blocker_done(w->h[k]) != 0)
                atomic_fetch_add(&r->errors, 1);
        } else if (atomic_fetch_sub(&r->left, 1) == 1) {
            char one = 1;
            while (write(r->floor_wr, &one, 1) < 0 && errno == EINTR) {
            }
        }
    }
    return NULL;
}

/* Starts T workers waiting at the gate. */
static void workers_start(run *r, worker *ws, unsigned t)
{
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->go = 0;
    for (unsigned k = 0; k < t; k++) {
        ws[k].r = r;
        int e = pthread_create(&ws[k].th, NULL, worker_main, &ws[k]);
        if (e)
            bench_die("pthread_create: %s", strerror(e));
    }
}

/* Opens the gate: t0 is now. */
static int64_t workers_go(run *r)
{
    pthread_mutex_lock(&r->mu);
    r->t0 = bench_now_ns();
    r->go = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return r->t0;
}

static void workers_join(run *r, worker *ws, unsigned t)
{
    for (unsigned k = 0; k < t; k++)
        pthread_join(ws[k].th, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

/* Each thread's handles in its own order, so the harness reads its arrays
 * front to back and only curfew touches memory at random. */
static void scatter(worker *ws, unsigned t, const curfew_blocker *h)
{
    for (unsigned k = 0; k < t; k++) {
        for (size_t j = 0; j < ws[k].n; j++)
            ws[k].h[j] = h[ws[k].idx[j]];
    }
}

static const int64_t *sort_delay;

static int by_delay(const void *a, const void *b)
{
    int64_t x = sort_delay[*(const uint32_t *)a];
    int64_t y = sort_delay[*(const uint32_t *)b];
    return (x > y) - (x < y);
}

static int pending_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    if (arg)
        (*(size_t *)arg)++;
    return CURFEW_PENDING;
}

static curfew *make_coordinator(void)
{
    return bench_one_phase("work", "curfew-bench");
}

/* VmHWM restarts from the current RSS (Linux: clear_refs 5). */
static int reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* One observer after another, each waiting for its own work: a helper
 * does observer i's work (due delay[i] after it was asked) and the
 * notifier waits for it before asking the next. */
typedef struct seq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 0 idle, 1 asked, 2 done, 3 quit */
    int64_t due;
} seq;

static void *seq_helper(void *arg)
{
    seq *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->state != 1 && s->state != 3)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->state == 3)
            break;
        int64_t due = s->due;
        pthread_mutex_unlock(&s->mu);
        bench_sleep_until_ns(due);
        pthread_mutex_lock(&s->mu);
        s->state = 2;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static int64_t sequential_ns(const int64_t *delay, size_t n)
{
    seq s;
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.state = 0;
    pthread_t th;
    int e = pthread_create(&th, NULL, seq_helper, &s);
    if (e)
        bench_die("pthread_create: %s", strerror(e));
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&s.mu);
        s.due = bench_now_ns() + delay[i];
        s.state = 1;
        pthread_cond_broadcast(&s.cv);
        while (s.state != 2)
            pthread_cond_wait(&s.cv, &s.mu);
        s.state = 0;
        pthread_mutex_unlock(&s.mu);
    }
    int64_t t1 = bench_now_ns();
    pthread_mutex_lock(&s.mu);
    s.state = 3;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    pthread_join(th, NULL);
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    return t1 - t0;
}

static double ms(int64_t ns)
{
    return (double)ns / 1e6;
}

int bench_phase(int argc, char **argv)
{
    int64_t n64 = bench_opt_int(argc, argv, "--blockers", 100000);
    int64_t t64 = bench_opt_int(argc, argv, "--threads", 2);
    int64_t dms = bench_opt_int(argc, argv, "--max-delay-ms", 10);
    uint64_t seed = (uint64_t)bench_opt_int(argc, argv, "--seed", 42);
    int64_t seq64 = bench_opt_int(argc, argv, "--seq-blockers", 200);
    if (n64 < 1 || n64 > 100000000 || t64 < 1 || t64 > 1024)
        bench_die("--blockers must be 1..100000000, --threads 1..1024");
    size_t n = (size_t)n64;
    unsigned t = (unsigned)t64;
    size_t nseq = seq64 < 1 ? 1 : (size_t)seq64;
    if (nseq > n)
        nseq = n;

    /* Everything the harness needs, made and touched before any
     * measurement: delays, per-thread orders, handles, names. */
    int64_t *delay = malloc(n * sizeof(*delay));
    curfew_blocker *h = calloc(n, sizeof(*h));
    char **names = malloc(n * sizeof(*names));
    char *namebuf = malloc(n * 16);
    worker *ws = calloc(t, sizeof(*ws));
    if (!delay || !h || !names || !namebuf || !ws)
        bench_die("out of memory");
    memset(h, 0, n * sizeof(*h));
    bench_draw_delays(delay, n, dms * 1000000, seed);
    int64_t critical = 0;
    size_t name_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (delay[i] > critical)
            critical = delay[i];
        names[i] = namebuf + i * 16;
        name_bytes += (size_t)snprintf(names[i], 16, "b%zu", i) + 1;
    }
    for (unsigned k = 0; k < t; k++) {
        size_t cap = n / t + 1;
        ws[k].idx = malloc(cap * sizeof(uint32_t));
        ws[k].due = malloc(cap * sizeof(int64_t));
        ws[k].h = calloc(cap, sizeof(curfew_blocker));
        if (!ws[k].idx || !ws[k].due || !ws[k].h)
            bench_die("out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        worker *w = &ws[i % t];
        w->idx[w->n++] = (uint32_t)i;
    }
    sort_delay = delay;
    for (unsigned k = 0; k < t; k++)
        qsort(ws[k].idx, ws[k].n, sizeof(uint32_t), by_delay);
    for (unsigned k = 0; k < t; k++) {
        for (size_t j = 0; j < ws[k].n; j++)
            ws[k].due[j] = delay[ws[k].idx[j]];
        memset(ws[k].h, 0, ws[k].n * sizeof(curfew_blocker));
    }

    /* ---- curfew: add (timed, heap measured), then the phase. */
    int rss_ok = reset_peak_rss() == 0;
    int64_t rss0 = bench_proc_status_bytes("VmRSS");
    curfew *cf = make_coordinator();
    curfew_barrier *work = curfew_phase(cf, "work");
    int64_t heap0 = bench_heap_bytes();
    int64_t res0 = bench_proc_status_bytes("VmRSS");
    int64_t c0 = bench_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t a0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        int e =
            curfew_add_blocker(work, names[i], pending_trigger, NULL, &h[i]);
        if (e)
            bench_die("curfew_add_blocker #%zu: %s", i, curfew_strerror(e));
    }
    int64_t a1 = bench_now_ns();
    int64_t c1 = bench_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t heap1 = bench_heap_bytes();
    int64_t res1 = bench_proc_status_bytes("VmRSS");

    run r;
    memset(&r, 0, sizeof(r));
    r.mode = MODE_CURFEW;
    scatter(ws, t, h);
    atomic_init(&r.errors, 0);
    workers_start(&r, ws, t);
    curfew_stats st0, st1;
    curfew_stats_get(cf, &st0);
    int64_t p0 = bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    int64_t t0 = workers_go(&r);
    int e = curfew_begin(cf);
    if (e)
        bench_die("curfew_begin: %s", curfew_strerror(e));
    e = curfew_run(cf);
    int64_t t1 = bench_now_ns();
    int64_t p1 = bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (e)
        bench_die("curfew_run: %s", curfew_strerror(e));
    curfew_stats_get(cf, &st1);
    workers_join(&r, ws, t);
    size_t errors = atomic_load(&r.errors);
    int64_t hwm = bench_proc_status_bytes("VmHWM");

    int64_t d0 = bench_now_ns();
    e = curfew_destroy(cf);
    int64_t d1 = bench_now_ns();
    if (e)
        bench_die("curfew_destroy: %s", curfew_strerror(e));

    /* ---- done, single thread, while the phase waits for every blocker. */
    cf = make_coordinator();
    work = curfew_phase(cf, "work");
    size_t triggered = 0;
    for (size_t i = 0; i < n; i++) {
        e = curfew_add_blocker(work, names[i], pending_trigger, &triggered,
                               &h[i]);
        if (e)
            bench_die("curfew_add_blocker: %s", curfew_strerror(e));
    }
    scatter(ws, t, h);
    int64_t b0 = bench_now_ns();
    curfew_begin(cf);
    while (triggered < n) {
        e = curfew_dispatch(cf);
        if (e < 0)
            bench_die("curfew_dispatch: %s", curfew_strerror(e));
        if (triggered < n) {
            struct pollfd pfd = {.fd = curfew_fd(cf), .events = POLLIN};
            poll(&pfd, 1, 10);
        }
    }
    int64_t b1 = bench_now_ns();
    size_t done_errors = 0;
    /* In the order the phase finishes them (by due time: random with
     * respect to the order of adding), as the phase does. */
    int64_t fc0 = bench_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    int64_t f0 = bench_now_ns();
    for (unsigned k = 0; k < t; k++) {
        for (size_t j = 0; j < ws[k].n; j++) {
            if (curfew_blocker_done(ws[k].h[j]) != 0)
                done_errors++;
        }
    }
    int64_t f1 = bench_now_ns();
    int64_t fc1 = bench_cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    curfew_run(cf);
    curfew_destroy(cf);

    /* The same in the order of adding: the cache's best case. */
    cf = make_coordinator();
    work = curfew_phase(cf, "work");
    for (size_t i = 0; i < n; i++) {
        e = curfew_add_blocker(work, names[i], NULL, NULL, &h[i]);
        if (e)
            bench_die("curfew_add_blocker: %s", curfew_strerror(e));
    }
    curfew_begin(cf);
    curfew_dispatch(cf);
    int64_t s0 = bench_now_ns();
    for (size_t i = 0; i < n; i++) {
        if (curfew_blocker_done(h[i]) != 0)
            done_errors++;
    }
    int64_t s1 = bench_now_ns();
    curfew_run(cf);
    curfew_destroy(cf);

    /* ---- the floor: the same threads and work, an atomic counter. */
    int fds[2];
    if (pipe(fds))
        bench_die("pipe: %s", strerror(errno));
    memset(&r, 0, sizeof(r));
    r.mode = MODE_FLOOR;
    r.floor_wr = fds[1];
    atomic_init(&r.left, n);
    atomic_init(&r.errors, 0);
    workers_start(&r, ws, t);
    int64_t q0 = bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    int64_t g0 = workers_go(&r);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR) {
    }
    int64_t g1 = bench_now_ns();
    int64_t q1 = bench_cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    workers_join(&r, ws, t);
    close(fds[0]);
    close(fds[1]);

    /* ---- sequential, on the first nseq blockers, scaled to n. */
    int64_t sq = sequential_ns(delay, nseq);
    double seq_ms = ms(sq) / (double)nseq * (double)n;

    double total = ms(t1 - t0), crit = ms(critical);
    double per = 1.0 / (double)n;
    /* Resident memory growth over the adds: it sees the slot chunks curfew
     * maps itself (for huge pages), which malloc's counters do not. */
    double heap_all = res0 >= 0 && res1 >= 0 ? (double)(res1 - res0) * per : -1;
    double heap_malloc = heap0 >= 0 ? (double)(heap1 - heap0) * per : -1;
    double heap_names = (double)name_bytes * per;
    double peak =
        rss_ok && hwm >= 0 && rss0 >= 0 ? (double)(hwm - rss0) * per : -1.0;
    printf("{\"bench\":\"phase\",\"blockers\":%zu,\"threads\":%u,"
           "\"max_delay_ms\":%lld,\"seed\":%llu,"
           "\"critical_path_ms\":%.3f,\"total_ms\":%.3f,"
           "\"overhead_ms\":%.3f,\"cpu_ms\":%.3f,"
           "\"add_ns\":%.1f,\"add_cpu_ns\":%.1f,"
           "\"add_includes_name_copy\":true,"
           "\"names_made_outside_timed_loop\":true,"
           "\"done_ns\":%.1f,\"done_cpu_ns\":%.1f,"
           "\"done_order\":\"by due time (random)\","
           "\"done_in_add_order_ns\":%.1f,"
           "\"begin_and_trigger_ns\":%.1f,"
           "\"bytes_per_blocker\":%.1f,"
           "\"bytes_per_blocker_with_names\":%.1f,"
           "\"name_bytes_per_blocker\":%.1f,"
           "\"bytes_method\":\"resident memory (VmRSS) growth over the N "
           "adds, less the names' own bytes (strlen + 1)\","
           "\"malloc_bytes_per_blocker\":%.1f,"
           "\"peak_rss_bytes_per_blocker\":%.1f,"
           "\"sequential_ms\":%.1f,\"sequential_measured_blockers\":%zu,"
           "\"sequential_measured_ms\":%.3f,"
           "\"wakeups\":%llu,\"dispatches\":%llu,"
           "\"floor_total_ms\":%.3f,\"floor_overhead_ms\":%.3f,"
           "\"floor_cpu_ms\":%.3f,"
           "\"destroy_ms\":%.3f,\"errors\":%zu}\n",
           n, t, (long long)dms, (unsigned long long)seed, crit, total,
           total - crit, ms(p1 - p0), (double)(a1 - a0) * per,
           (double)(c1 - c0) * per, (double)(f1 - f0) * per,
           (double)(fc1 - fc0) * per, (double)(s1 - s0) * per,
           (double)(b1 - b0) * per, heap_all - heap_names, heap_all, heap_names,
           heap_malloc, peak, seq_ms, nseq, ms(sq),
           (unsigned long long)(st1.wakeups - st0.wakeups),
           (unsigned long long)(st1.dispatches - st0.dispatches), ms(g1 - g0),
           ms(g1 - g0) - crit, ms(q1 - q0), ms(d1 - d0), errors + done_errors);

    for (unsigned k = 0; k < t; k++) {
        free(ws[k].idx);
        free(ws[k].due);
        free(ws[k].h);
    }
    free(ws);
    free(namebuf);
    free(names);
    free(h);
    free(delay);
    return 0;
}
