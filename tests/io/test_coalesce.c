/* Coalescing and parallelism of writes: CONTRACT.md I3 (with I2 for what
 * ends on disk).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "io_util.h"

#include <errno.h>
#include <unistd.h>

/* A queue operation that holds an I/O thread until its gate opens. */
struct hold {
    io_gate gate;
    atomic_int entered;
};

static void hold_op(void *arg)
{
    struct hold *h = arg;
    atomic_store(&h->entered, 1);
    io_gate_wait(&h->gate);
}

static void close_queue(curfew_queue *q)
{
    CHECK_EQ(curfew_queue_close(q, NULL, NULL), 0);
    int64_t end = th_now_ms() + 10000;
    int r;
    while ((r = curfew_queue_free(q)) == -EBUSY && th_now_ms() < end)
        th_sleep_ms(1);
    CHECK_EQ(r, 0);
}

/* I3: with the only I/O thread held, 1000 writes of the same path make one
 * write to disk: 999 are coalesced into the newest, every one of the 1000
 * callbacks runs, once, with 0, and the file holds the last data. */
TEST(io_coalesce_1000)
{
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "hot.json");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "holder", &q), 0);
    struct hold h;
    io_gate_init(&h.gate);
    atomic_init(&h.entered, 0);
    CHECK_EQ(curfew_queue_post(q, hold_op, &h), 0);
    io_wait_flag(&h.entered, 1, 10000);

    io_waiter w;
    io_waiter_init(&w);
    for (int i = 0; i < 1000; i++) {
        char text[32];
        int n = snprintf(text, sizeof(text), "{\"v\": %d}", i);
        CHECK_EQ(curfew_write_atomic(io, p, text, (size_t)n, NULL, io_cb, &w),
                 0);
    }
    curfew_io_stats st;
    CHECK_EQ(curfew_io_stats_get(io, &st), 0);
    CHECK_EQ(st.requested, 1000);
    CHECK_EQ(st.coalesced, 999);
    CHECK_EQ(st.written, 0);
    CHECK_EQ(io_waiter_calls(&w), 0);
    CHECK(access(p, F_OK) != 0);

    io_gate_open(&h.gate);
    io_waiter_wait(&w, 1000, 10000);
    st = io_stats_settled(io, 5000);
    CHECK_EQ(io_waiter_calls(&w), 1000);
    CHECK_EQ(w.errors, 0);
    CHECK_EQ(st.requested, 1000);
    CHECK_EQ(st.written, 1);
    CHECK_EQ(st.coalesced, 999);
    CHECK_EQ(st.failed, 0);
    CHECK(io_file_is(p, "{\"v\": 999}", 10));

    close_queue(q);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    io_gate_destroy(&h.gate);
    CHECK_EQ(io_count_entries(dir), 1);
    io_rmtree(dir);
}

struct poster {
    pthread_t th;
    curfew_io *io;
    const char *path;
    io_waiter *w;
    pthread_mutex_t *order; /* makes "the last request" well defined */
    int *gen;
    int rounds;
};

static void *post_writes(void *arg)
{
    struct poster *ps = arg;
    for (int i = 0; i < ps->rounds; i++) {
        pthread_mutex_lock(ps->order);
        int g = ++*ps->gen;
        size_t n;
        char *rec = io_make_rec((uint64_t)g, (size_t)(g % 2 ? 50000 : 30), &n);
        int r =
            curfew_write_atomic(ps->io, ps->path, rec, n, NULL, io_cb, ps->w);
        pthread_mutex_unlock(ps->order);
        free(rec);
        if (r != 0)
            th_fail(__FILE__, __LINE__, "write %d: %s", g, curfew_strerror(r));
        if (i % 16 == 0)
            usleep(200);
    }
    return NULL;
}

/* I3 under concurrency: four threads write one path 250 times each while
 * two I/O threads work. Each request is either written or coalesced into a
 * newer one (written + coalesced == requested), far fewer reach the disk,
 * all 1000 callbacks run with 0, and the file holds the newest request. */
TEST(io_coalesce_concurrent)
{
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "shared");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 2);
    io_waiter w;
    io_waiter_init(&w);
    pthread_mutex_t order = PTHREAD_MUTEX_INITIALIZER;
    int gen = 0;
    struct poster ps[4];
    for (int i = 0; i < 4; i++) {
        ps[i] = (struct poster){.io = io,
                                .path = p,
                                .w = &w,
                                .order = &order,
                                .gen = &gen,
                                .rounds = 250};
        CHECK_EQ(pthread_create(&ps[i].th, NULL, post_writes, &ps[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(ps[i].th, NULL);
    io_waiter_wait(&w, 1000, 30000);
    curfew_io_stats st = io_stats_settled(io, 5000);
    CHECK_EQ(io_waiter_calls(&w), 1000);
    CHECK_EQ(w.errors, 0);
    fprintf(stderr, "1000 requests: %llu written, %llu coalesced\n",
            (unsigned long long)st.written, (unsigned long long)st.coalesced);
    CHECK_EQ(st.requested, 1000);
    CHECK_EQ(st.written + st.coalesced, 1000);
    CHECK_EQ(st.failed, 0);
    CHECK(st.written >= 1);
    CHECK(st.written < 500);
    size_t n;
    char *data = io_read_file(p, &n);
    CHECK(data != NULL);
    uint64_t last = 0;
    CHECK_EQ(io_parse_rec(data, n, &last, NULL), 0);
    CHECK_EQ(last, 1000);
    free(data);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    CHECK_EQ(io_count_entries(dir), 1);
    io_rmtree(dir);
}

struct seen {
    const char *path;
    char got[16], got_later[16]; /* the file at the start and the end */
    atomic_int read;             /* the first read is done */
    atomic_int calls;
};

static void read_file_into(const char *path, char *out, size_t size)
{
    size_t n;
    char *data = io_read_file(path, &n);
    CHECK(data != NULL);
    snprintf(out, size, "%s", data);
    free(data);
}

/* Reads the file, says so, waits 200 ms and reads it again. */
static void read_back_cb(int result, void *arg)
{
    struct seen *s = arg;
    CHECK_EQ(result, 0);
    read_file_into(s->path, s->got, sizeof(s->got));
    atomic_store(&s->read, 1);
    th_sleep_ms(200);
    read_file_into(s->path, s->got_later, sizeof(s->got_later));
    atomic_fetch_add(&s->calls, 1);
}

/* I3 (and I2): writes of one path never overlap, even with four idle I/O
 * threads: a second write asked for while the first one's callback runs
 * waits for it — the file stays the first version for the whole callback
 * — and then replaces the file. The newest data wins. */
TEST(io_same_path_in_order)
{
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "ordered");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 4);
    static struct seen s1, s2;
    s1.path = s2.path = p;
    CHECK_EQ(curfew_write_atomic(io, p, "first", 5, NULL, read_back_cb, &s1),
             0);
    io_wait_flag(&s1.read, 1, 10000);
    CHECK_EQ(curfew_write_atomic(io, p, "second", 6, NULL, read_back_cb, &s2),
             0);
    io_wait_flag(&s2.calls, 1, 10000);
    CHECK_EQ(atomic_load(&s1.calls), 1);
    CHECK_STR(s1.got, "first");
    CHECK_STR(s1.got_later, "first");
    CHECK_STR(s2.got, "second");
    CHECK(io_file_is(p, "second", 6));
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

struct slow {
    atomic_int calls;
    atomic_int entered;  /* callbacks that have started */
    atomic_int together; /* callbacks that saw all four started */
    int64_t start_ms[8], end_ms[8];
    pthread_t tid[8];
};

/* The sum of the four callbacks' times: at least 1200 ms, more on a loaded
 * machine; one after another they would take at least that from the first
 * one's start to the last one's end (slow_span; the writes before them,
 * whose fsyncs a loaded disk can make slow, are not counted). */
static int64_t slow_sum(const struct slow *s)
{
    int64_t sum = 0;
    for (int i = 0; i < 4; i++)
        sum += s->end_ms[i] - s->start_ms[i];
    return sum;
}

static int64_t slow_span(const struct slow *s)
{
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < 4; i++) {
        first = s->start_ms[i] < first ? s->start_ms[i] : first;
        last = s->end_ms[i] > last ? s->end_ms[i] : last;
    }
    return last - first;
}

struct slow_arg {
    struct slow *s;
    int i;
};

/* Each callback waits (up to 10 s) until all four have started, then
 * takes 300 ms: four callbacks run at the same time only on four threads
 * working in parallel, however late the machine lets each thread start. */
static void slow_done_cb(int result, void *arg)
{
    struct slow_arg *a = arg;
    CHECK_EQ(result, 0);
    a->s->start_ms[a->i] = th_now_ms();
    atomic_fetch_add(&a->s->entered, 1);
    int64_t end = th_now_ms() + 10000;
    while (atomic_load(&a->s->entered) < 4 && th_now_ms() < end)
        th_sleep_ms(1);
    if (atomic_load(&a->s->entered) == 4)
        atomic_fetch_add(&a->s->together, 1);
    th_sleep_ms(300);
    a->s->end_ms[a->i] = th_now_ms();
    a->s->tid[a->i] = pthread_self();
    atomic_fetch_add(&a->s->calls, 1);
}

/* Four writes of different paths, each with a callback that takes 300 ms:
 * how long until all four called back. */
static int64_t four_slow_writes(curfew_io *io, const char *dir, int round,
                                struct slow *s)
{
    struct slow_arg args[4];
    char p[4][IO_PATH], name[32];
    char *rec[4];
    size_t n[4];
    memset(s, 0, sizeof(*s));
    for (int i = 0; i < 4; i++) {
        args[i].s = s;
        args[i].i = i;
        snprintf(name, sizeof(name), "par-%d-%d", round, i);
        io_path(p[i], sizeof(p[i]), dir, name);
        rec[i] = io_make_rec((uint64_t)i, 100000, &n[i]);
    }
    /* A burst: the four requests back to back. */
    int64_t t0 = th_now_ms();
    for (int i = 0; i < 4; i++)
        CHECK_EQ(curfew_write_atomic(io, p[i], rec[i], n[i], NULL, slow_done_cb,
                                     &args[i]),
                 0);
    for (int i = 0; i < 4; i++)
        free(rec[i]);
    io_wait_flag(&s->calls, 4, 60000);
    int64_t last = 0;
    for (int i = 0; i < 4; i++)
        if (s->end_ms[i] > last)
            last = s->end_ms[i];
    return last - t0;
}

/* I3 with io.h ("Writes to different files run (and fsync) in
 * parallel"): only writes of one path wait for each other. With
 * threads=4, four writes whose callbacks each take 300 ms run on four
 * threads at the same time (each callback waits for the others to start)
 * and are all done in less time than the callbacks took in all (at least
 * 1200 ms), which one after another they would take at least — both when
 * the threads are started by the burst and when one idle thread is
 * already there. */
TEST(io_parallel_paths)
{
    char dir[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 4);
    struct slow s;

    int64_t cold = four_slow_writes(io, dir, 0, &s);
    fprintf(stderr,
            "cold start: 4 x 300 ms in %" PRId64 " ms (%" PRId64
            " ms in all)\n",
            cold, slow_sum(&s));
    CHECK_EQ(atomic_load(&s.together), 4);
    CHECK(slow_sum(&s) >= 1200);
    CHECK(slow_span(&s) < slow_sum(&s));
    for (int i = 1; i < 4; i++)
        for (int j = 0; j < i; j++)
            CHECK(!pthread_equal(s.tid[i], s.tid[j]));

    /* A fresh io with one idle thread (after one write), then a burst. */
    io_destroy_io(io, 5000);
    io = io_new_io(cf, NULL, 4);
    io_waiter w;
    io_waiter_init(&w);
    char p[IO_PATH];
    io_path(p, sizeof(p), dir, "warm-up");
    CHECK_EQ(curfew_write_atomic(io, p, "w", 1, NULL, io_cb, &w), 0);
    io_waiter_wait(&w, 1, 10000);
    th_sleep_ms(50);
    int64_t warm = four_slow_writes(io, dir, 1, &s);
    fprintf(stderr,
            "one idle thread: 4 x 300 ms in %" PRId64 " ms (%" PRId64
            " ms in all)\n",
            warm, slow_sum(&s));
    CHECK_EQ(atomic_load(&s.together), 4);
    CHECK(slow_sum(&s) >= 1200);
    CHECK(slow_span(&s) < slow_sum(&s));

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    io_rmtree(dir);
}
