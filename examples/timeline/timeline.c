/* curfew-timeline: the demo `./dev demo` runs.
 *
 * A pretend server shuts down through four phases. Its services add
 * blockers; each blocker's trigger starts a worker thread that needs 50 to
 * 400 ms (random), sets a status text half-way and then finishes the blocker
 * (one of them fails). A cache service owns a barrier of its own that waits
 * inside the "drain" phase. Another thread asks for the shutdown, the main
 * thread runs it with curfew_run(), and at the end the program prints a
 * timeline of what happened.
 *
 *   curfew-timeline [SEED]
 *
 * Only the public API is used.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <curfew.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint32_t rng_state;

static uint32_t rng_next(void)
{
    /* xorshift32: enough for demo delays, and repeatable from a seed. */
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

static atomic_int failures;

static void expect_rc(const char *what, int rc, int want)
{
    if (rc != want) {
        fprintf(stderr, "curfew-timeline: %s returned %d (%s), expected %d\n",
                what, rc, curfew_strerror(rc), want);
        failures++;
    }
}

/* Time 0 of the demo's own clock: the first callback curfew runs after
 * curfew_begin(). Set and read on the dispatching thread; the worker
 * threads read it after pthread_create(), which orders the accesses. */
static int64_t t0 = -1;

static int64_t since_begin(void)
{
    if (t0 < 0)
        t0 = now_ms();
    return now_ms() - t0;
}

/* ---- the services' work ------------------------------------------------- */

struct job {
    const char *barrier; /* the phase or barrier it blocks */
    const char *name;
    const char *status; /* its status text half-way */
    int error;          /* 0, or the error it fails with */
    const char *what;   /* what failed */
    /* Filled while the demo runs. */
    curfew_blocker handle;
    int64_t delay_ms;
    int64_t start_ms, end_ms; /* on the demo clock, -1 unknown */
    pthread_t thread;
    int thread_started;
    int finish_rc; /* what curfew_blocker_done()/_fail() returned */
};

static struct job jobs[] = {
    {"stop-accepting", "http listener", "closing 3 listening sockets", 0, NULL},
    {"stop-accepting", "admin socket", "unlinking admin.sock", 0, NULL},
    {"drain", "request pool", "17 requests in flight", 0, NULL},
    {"drain", "websocket sessions", "close frames sent to 42 clients", 0, NULL},
    {"cache", "cache writer", "writing 128 dirty pages", 0, NULL},
    {"cache", "cache index", "compacting the index", 0, NULL},
    {"persist", "settings.json", "atomic write of 4 KiB", 0, NULL},
    {"persist", "history db", "checkpointing the WAL", -EIO,
     "fsync(history.db) failed"},
    {"persist", "session store", "saving 42 sessions", 0, NULL},
    {"final", "telemetry", "sending 3 pings", 0, NULL},
    {"final", "log file", "flushing 2 MiB of log", 0, NULL},
};
#define NJOBS (sizeof jobs / sizeof jobs[0])

static curfew *cf;
/* A blocker with no trigger that "request pool" removes once it sees that
 * there is nothing to export (B6). */
static curfew_blocker exporter;

static void *job_main(void *arg)
{
    struct job *j = arg;
    sleep_ms(j->delay_ms / 2);
    curfew_blocker_status(j->handle, "%s", j->status);
    sleep_ms(j->delay_ms - j->delay_ms / 2);
    j->end_ms = since_begin();
    if (j->error)
        j->finish_rc = curfew_blocker_fail(j->handle, j->error, j->what);
    else
        j->finish_rc = curfew_blocker_done(j->handle);
    return NULL;
}

/* The trigger (B2): runs on the dispatching thread when the job's barrier
 * starts waiting; starts the work and says that it will finish later. */
static int start_job(curfew_blocker self, void *arg)
{
    struct job *j = arg;
    j->handle = self;
    j->start_ms = since_begin();
    curfew_blocker_status(self, "starting (needs %" PRId64 " ms)", j->delay_ms);

    if (strcmp(j->name, "request pool") == 0) {
        /* A late service tries to register with a phase that has already
         * completed: refused, and kept as a broken registration (B5). */
        expect_rc("late add",
                  curfew_add_blocker(curfew_phase(cf, "stop-accepting"),
                                     "late listener", NULL, NULL, NULL),
                  -ESHUTDOWN);
        expect_rc("remove exporter", curfew_remove_blocker(exporter), 0);
    }

    int rc = pthread_create(&j->thread, NULL, job_main, j);
    if (rc != 0)
        return -rc; /* the blocker fails; the phase goes on (B3) */
    j->thread_started = 1;
    return CURFEW_PENDING;
}

/* ---- events ------------------------------------------------------------- */

struct event_copy {
    curfew_event_type type;
    char *phase, *barrier, *blocker, *text;
    int error;
    int64_t duration_ms, elapsed_ms;
};

static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static struct event_copy *events;
static size_t nevents, events_cap;

static char *copy_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *event_name(curfew_event_type t)
{
    switch (t) {
    case CURFEW_EV_BEGIN:
        return "shutdown began";
    case CURFEW_EV_PHASE_BEGIN:
        return "phase began";
    case CURFEW_EV_PHASE_END:
        return "phase completed";
    case CURFEW_EV_BLOCKER_FAILED:
        return "blocker failed";
    case CURFEW_EV_WARNING:
        return "warning";
    case CURFEW_EV_HANG:
        return "hang";
    case CURFEW_EV_COMPLETE:
        return "shutdown completed";
    case CURFEW_EV_NOTICE:
        return "notice";
    }
    return "?";
}

/* cfg.on_event (D4): on the dispatching thread (the hang event, which this
 * demo never sees, comes from the watchdog thread: hence the lock). */
static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_BEGIN)
        since_begin(); /* sets t0 */

    printf("  %+6" PRId64 " ms  %s", ev->elapsed_ms, event_name(ev->type));
    if (ev->barrier)
        printf(": %s", ev->barrier);
    if (ev->type == CURFEW_EV_BLOCKER_FAILED)
        printf(" / %s: %s (%s)", ev->blocker ? ev->blocker : "?",
               ev->text ? ev->text : "", curfew_strerror(ev->error));
    if (ev->type == CURFEW_EV_PHASE_END || ev->type == CURFEW_EV_COMPLETE)
        printf(", after %" PRId64 " ms", ev->duration_ms);
    if ((ev->type == CURFEW_EV_WARNING || ev->type == CURFEW_EV_HANG) &&
        ev->text)
        printf("\n%s", ev->text);
    printf("\n");

    pthread_mutex_lock(&events_lock);
    if (nevents == events_cap) {
        size_t cap = events_cap ? events_cap * 2 : 32;
        struct event_copy *n = realloc(events, cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&events_lock);
            failures++;
            return;
        }
        events = n;
        events_cap = cap;
    }
    struct event_copy *c = &events[nevents++];
    c->type = ev->type;
    c->phase = copy_str(ev->phase);
    c->barrier = copy_str(ev->barrier);
    c->blocker = copy_str(ev->blocker);
    c->text = copy_str(ev->text);
    c->error = ev->error;
    c->duration_ms = ev->duration_ms;
    c->elapsed_ms = ev->elapsed_ms;
    pthread_mutex_unlock(&events_lock);
}

static void free_events(void)
{
    for (size_t i = 0; i < nevents; i++) {
        free(events[i].phase);
        free(events[i].barrier);
        free(events[i].blocker);
        free(events[i].text);
    }
    free(events);
    events = NULL;
    nevents = events_cap = 0;
}

/* ---- the timeline ------------------------------------------------------- */

#define BAR_WIDTH 40
#define LABEL_WIDTH 30

static int64_t total_ms = 1;

static void print_row(const char *label, int64_t start, int64_t end, char fill,
                      const char *note)
{
    char bar[BAR_WIDTH + 1];
    memset(bar, ' ', BAR_WIDTH);
    bar[BAR_WIDTH] = '\0';
    if (start >= 0 && end >= start) {
        int64_t a = start * BAR_WIDTH / total_ms;
        int64_t b = (end * BAR_WIDTH + total_ms - 1) / total_ms;
        if (a >= BAR_WIDTH)
            a = BAR_WIDTH - 1;
        if (b > BAR_WIDTH)
            b = BAR_WIDTH;
        if (b <= a)
            b = a + 1;
        memset(bar + a, fill, (size_t)(b - a));
        printf("%-*s |%s| %5" PRId64 " ms", LABEL_WIDTH, label, bar,
               end - start);
    } else {
        printf("%-*s |%s|    -- ms", LABEL_WIDTH, label, bar);
    }
    if (note && *note)
        printf("  %s", note);
    printf("\n");
}

static const char *result_name(int r)
{
    switch (r) {
    case CURFEW_RESULT_PENDING:
        return "pending";
    case CURFEW_RESULT_OK:
        return "ok";
    case CURFEW_RESULT_ERROR:
        return "error";
    case CURFEW_RESULT_TIMEOUT:
        return "timeout";
    case CURFEW_RESULT_REMOVED:
        return "removed";
    }
    return "?";
}

static void print_blocker(const struct job *j, int indent)
{
    int err = 0;
    int r = curfew_blocker_result(j->handle, &err);
    char status[CURFEW_STATUS_MAX + 1] = "";
    curfew_blocker_describe(j->handle, NULL, 0, status, sizeof status);

    char label[64], note[CURFEW_STATUS_MAX + 128];
    snprintf(label, sizeof label, "%*s%-7s %s", indent, "",
             r < 0 ? curfew_strerror(r) : result_name(r), j->name);
    if (r == CURFEW_RESULT_ERROR)
        snprintf(note, sizeof note, "%s (%s)", j->what ? j->what : "failed",
                 curfew_strerror(err));
    else
        snprintf(note, sizeof note, "\"%s\"", status);
    print_row(label, j->start_ms, j->end_ms, '=', note);
}

static void print_jobs_of(const char *barrier, int indent)
{
    for (size_t i = 0; i < NJOBS; i++)
        if (strcmp(jobs[i].barrier, barrier) == 0)
            print_blocker(&jobs[i], indent);
}

static void print_timeline(curfew_barrier *cache)
{
    for (size_t i = 0; i < nevents; i++)
        if (events[i].type == CURFEW_EV_COMPLETE)
            total_ms = events[i].elapsed_ms > 0 ? events[i].elapsed_ms : 1;

    char end_label[32];
    snprintf(end_label, sizeof end_label, "%" PRId64 " ms", total_ms);
    printf("\ntimeline: # phase, = blocker, from curfew_begin() to the end\n");
    printf("%-*s  0 ms%*s\n", LABEL_WIDTH, "", BAR_WIDTH - 4, end_label);
    for (unsigned p = 0; p < curfew_phase_count(cf); p++) {
        const char *phase = curfew_phase_name(cf, p);
        int64_t start = -1, end = -1;
        for (size_t i = 0; i < nevents; i++) {
            if (!events[i].phase || strcmp(events[i].phase, phase) != 0)
                continue;
            if (events[i].type == CURFEW_EV_PHASE_BEGIN)
                start = events[i].elapsed_ms;
            if (events[i].type == CURFEW_EV_PHASE_END)
                end = events[i].elapsed_ms;
        }
        print_row(phase, start, end, '#', NULL);
        print_jobs_of(phase, 2);

        if (strcmp(phase, "drain") == 0) {
            int st = curfew_barrier_state(cache);
            int64_t s = -1, e = -1;
            for (size_t i = 0; i < NJOBS; i++) {
                if (strcmp(jobs[i].barrier, "cache") != 0)
                    continue;
                if (s < 0 || (jobs[i].start_ms >= 0 && jobs[i].start_ms < s))
                    s = jobs[i].start_ms;
                if (jobs[i].end_ms > e)
                    e = jobs[i].end_ms;
            }
            char label[64];
            snprintf(label, sizeof label, "  %-7s %s",
                     st == CURFEW_COMPLETE ? "ok" : "pending", "cache service");
            print_row(label, s, e, '=', "nested barrier \"cache\":");
            print_jobs_of("cache", 4);
            print_row("  removed metrics exporter", -1, -1, ' ',
                      curfew_blocker_result(exporter, NULL) ==
                              CURFEW_RESULT_REMOVED
                          ? "removed: nothing to export"
                          : "?");
        }
    }

    curfew_broken_registration broken[4];
    int nbroken = curfew_broken_registrations(cf, broken, 4);
    printf("\nbroken registrations: %d\n", nbroken < 0 ? 0 : nbroken);
    for (int i = 0; i < nbroken && i < 4; i++) {
        const char *file = broken[i].file ? broken[i].file : "?";
        const char *slash = strrchr(file, '/');
        printf("  \"%s\" on %s: %s (%s:%d in %s)\n", broken[i].name,
               broken[i].barrier ? broken[i].barrier : "?",
               curfew_strerror(broken[i].error), slash ? slash + 1 : file,
               broken[i].line, broken[i].func ? broken[i].func : "?");
    }

    curfew_stats st;
    if (curfew_stats_get(cf, &st) == 0)
        printf("blockers: %" PRIu64 ", wake-ups: %" PRIu64
               ", dispatches: %" PRIu64 "\n",
               st.blockers, st.wakeups, st.dispatches);
}

/* ---- main --------------------------------------------------------------- */

/* Stands for whatever decides to stop: a signal, an admin command. */
static void *beginner_main(void *arg)
{
    (void)arg;
    sleep_ms(100);
    printf("  (a thread calls curfew_begin())\n");
    expect_rc("curfew_begin", curfew_begin(cf), 0);
    return NULL;
}

int main(int argc, char **argv)
{
    uint32_t seed = (uint32_t)now_ms() ^ (uint32_t)getpid() * 2654435761u;
    if (argc > 1)
        seed = (uint32_t)strtoul(argv[1], NULL, 10);
    rng_state = seed ? seed : 1;

    static const curfew_phase_config phases[] = {
        {"stop-accepting", 0, 0},
        {"drain", 0, 0},
        {"persist", 0, 0},
        {"final", 0, 0},
    };
    curfew_config cfg = {0};
    cfg.phases = phases;
    cfg.phase_count = sizeof phases / sizeof phases[0];
    cfg.warn_after_ms = 2000;
    cfg.crash_after_ms = 5000;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.process_name = "timeline-demo";
    cfg.on_event = on_event;

    int rc = curfew_create(&cf, &cfg);
    if (rc != 0) {
        fprintf(stderr, "curfew_create: %s\n", curfew_strerror(rc));
        return 1;
    }

    /* The cache service owns a barrier; its whole wait is one blocker of
     * "drain" (N1). */
    curfew_barrier *cache = NULL;
    expect_rc("curfew_barrier_create",
              curfew_barrier_create(cf, "cache", NULL, &cache), 0);
    if (cache)
        expect_rc("curfew_barrier_wait_in",
                  curfew_barrier_wait_in(cache, curfew_phase(cf, "drain"),
                                         "cache service"),
                  0);

    for (size_t i = 0; i < NJOBS; i++) {
        struct job *j = &jobs[i];
        j->delay_ms = 50 + (int64_t)(rng_next() % 351);
        j->start_ms = j->end_ms = -1;
        curfew_barrier *b = strcmp(j->barrier, "cache") == 0
                                ? cache
                                : curfew_phase(cf, j->barrier);
        expect_rc("curfew_add_blocker",
                  curfew_add_blocker(b, j->name, start_job, j, &j->handle), 0);
    }
    expect_rc("curfew_add_blocker",
              curfew_add_blocker(curfew_phase(cf, "drain"), "metrics exporter",
                                 NULL, NULL, &exporter),
              0);

    printf("curfew-timeline: %u phases, %zu blockers, seed %" PRIu32
           " (run `curfew-timeline %" PRIu32 "` to repeat)\n",
           curfew_phase_count(cf), NJOBS + 2, seed, seed);

    pthread_t beginner;
    if (pthread_create(&beginner, NULL, beginner_main, NULL) != 0) {
        fprintf(stderr, "curfew-timeline: pthread_create failed\n");
        curfew_destroy(cf);
        return 1;
    }
    rc = curfew_run(cf);
    pthread_join(beginner, NULL);
    expect_rc("curfew_run", rc, 0);
    for (size_t i = 0; i < NJOBS; i++) {
        if (jobs[i].thread_started) {
            pthread_join(jobs[i].thread, NULL);
            expect_rc(jobs[i].name, jobs[i].finish_rc, 0);
        }
    }

    print_timeline(cache);

    expect_rc("curfew_destroy", curfew_destroy(cf), 0);
    free_events();
    if (failures) {
        fprintf(stderr, "curfew-timeline: %d unexpected results\n", failures);
        return 1;
    }
    return 0;
}
