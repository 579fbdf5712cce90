/* The io object as a blocker of its phase: CONTRACT.md I1 (with B2 and B5
 * for the blockers it adds, C6 for the threads it starts).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "io_util.h"

#include "report/jsonr.h"

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a child that writes, shuts down, and checks from a later phase ---- */

struct late {
    curfew_io *io;
    io_waiter *early; /* the callbacks of the writes asked for before */
    int early_n;
    char path[IO_PATH];
    curfew_blocker self;
    pthread_t th;
    atomic_int requested; /* the late write was accepted */
    atomic_int cb_done;   /* its (slow) callback returned */
    int result;
};

static void slow_cb(int result, void *arg)
{
    struct late *l = arg;
    l->result = result;
    th_sleep_ms(300);
    atomic_store(&l->cb_done, 1);
}

/* Waits until the io's blocker has finished (every early write called
 * back and counted: the io finishes its blocker as it counts the last
 * one, and its trigger ran before this one), then asks for one more write
 * and finishes its own blocker at once: from then on only the io holds
 * the phase. */
static void *late_writer(void *arg)
{
    struct late *l = arg;
    io_waiter_wait(l->early, l->early_n, 30000);
    io_stats_settled(l->io, 30000);
    size_t n;
    char *rec = io_make_rec(777, 300000, &n);
    int r = curfew_write_atomic(l->io, l->path, rec, n, NULL, slow_cb, l);
    free(rec);
    if (r == 0)
        atomic_store(&l->requested, 1);
    curfew_blocker_done(l->self);
    return NULL;
}

static int late_trigger(curfew_blocker self, void *arg)
{
    struct late *l = arg;
    l->self = self;
    if (pthread_create(&l->th, NULL, late_writer, l) != 0)
        return -EAGAIN;
    return CURFEW_PENDING;
}

struct check {
    const char *dir;
    int n;
    curfew *cf;
    curfew_io *io;
    curfew_queue *q;
    struct late *late;
    int failures;
};

#define FAIL_IF(c, code)                                                    \
    do {                                                                    \
        if (c) {                                                            \
            fprintf(stderr, "telemetry check failed: %s (%d)\n", #c, code); \
            ck->failures++;                                                 \
        }                                                                   \
    } while (0)

static size_t early_size(int i)
{
    return i % 3 == 0 ? (size_t)(200000 + i) : (size_t)(10 + i);
}

/* A blocker of "telemetry", the phase after "persist": everything asked
 * for before persist completed is on disk, and new requests are refused. */
static int telemetry_trigger(curfew_blocker self, void *arg)
{
    struct check *ck = arg;
    (void)self;
    char p[IO_PATH], name[32];
    for (int i = 0; i < ck->n; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        io_path(p, sizeof(p), ck->dir, name);
        size_t n;
        char *data = io_read_file(p, &n);
        uint64_t gen = 0;
        FAIL_IF(!data || io_parse_rec(data, n, &gen, NULL) != 0, i);
        FAIL_IF(gen != (uint64_t)i + 1000, i);
        free(data);
    }
    /* The write asked for while persist waited, after the io's blocker
     * had finished, was waited for too, callback included. */
    FAIL_IF(!atomic_load(&ck->late->requested), 0);
    FAIL_IF(!atomic_load(&ck->late->cb_done), 0);
    FAIL_IF(ck->late->result != 0, ck->late->result);
    size_t n;
    char *data = io_read_file(ck->late->path, &n);
    uint64_t gen = 0;
    FAIL_IF(!data || io_parse_rec(data, n, &gen, NULL) != 0 || gen != 777, 0);
    free(data);

    /* I1: after the phase, never silently lost. */
    io_path(p, sizeof(p), ck->dir, "too-late");
    int r = curfew_write_atomic(ck->io, p, "x", 1, NULL, NULL, NULL);
    FAIL_IF(r != -ESHUTDOWN, r);
    FAIL_IF(access(p, F_OK) == 0, 0);
    curfew_queue *q = NULL;
    r = curfew_queue_create(ck->io, "too-late", &q);
    FAIL_IF(r != -ESHUTDOWN || q != NULL, r);
    curfew_io *io2 = NULL;
    r = curfew_io_create(ck->cf, NULL, &io2);
    FAIL_IF(r != -ESHUTDOWN || io2 != NULL, r);
    /* The queue that nobody closed was closed by its phase (I5). */
    FAIL_IF(curfew_queue_is_closed(ck->q) != 1, 0);
    r = curfew_queue_post(ck->q, free, NULL);
    FAIL_IF(r != -ESHUTDOWN, r);
    return CURFEW_DONE;
}

static void noop_fn(curfew_deferred *d, void *arg)
{
    (void)d;
    (void)arg;
}

static int deferred_too_late(curfew_blocker self, void *arg)
{
    struct check *ck = arg;
    (void)self;
    curfew_deferred *d = NULL;
    int r = curfew_deferred_create(ck->io, "too-late", 10, noop_fn, NULL, &d);
    FAIL_IF(r != -ESHUTDOWN || d != NULL, r);
    return CURFEW_DONE;
}

/* argv[0]: the directory, argv[1]: how many writes, argv[2]: the record. */
CHILD(io_phase_writer)
{
    if (argc < 3)
        return 2;
    const char *dir = argv[0];
    int n = atoi(argv[1]);
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.record_path = argv[2];
    cfg.crash_after_ms = 60000;
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_io_options o;
    memset(&o, 0, sizeof(o));
    o.name = "settings io";
    curfew_io *io = NULL;
    CHECK_EQ(curfew_io_create(cf, &o, &io), 0);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "unclosed queue", &q), 0);

    io_waiter w;
    io_waiter_init(&w);
    char p[IO_PATH], name[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        io_path(p, sizeof(p), dir, name);
        size_t len;
        char *rec = io_make_rec((uint64_t)i + 1000, early_size(i), &len);
        CHECK_EQ(curfew_write_atomic(io, p, rec, len, NULL, io_cb, &w), 0);
        free(rec);
    }
    struct late late;
    memset(&late, 0, sizeof(late));
    late.io = io;
    late.early = &w;
    late.early_n = n;
    io_path(late.path, sizeof(late.path), dir, "late");
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "persist"), "late writer",
                                late_trigger, &late, NULL),
             0);
    struct check ck = {
        .dir = dir, .n = n, .cf = cf, .io = io, .q = q, .late = &late};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "telemetry"), "check",
                                telemetry_trigger, &ck, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "telemetry"), "deferred",
                                deferred_too_late, &ck, NULL),
             0);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pthread_join(late.th, NULL);
    CHECK_EQ(io_waiter_calls(&w), n);
    CHECK_EQ(w.errors, 0);
    curfew_io_stats st;
    CHECK_EQ(curfew_io_stats_get(io, &st), 0);
    CHECK_EQ(st.requested, (uint64_t)n + 1);
    CHECK_EQ(st.written, (uint64_t)n + 1);
    CHECK_EQ(st.failed, 0);
    CHECK_EQ(curfew_queue_free(q), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    return ck.failures ? 3 : 0;
}

static const curfew__jval *jarr(const curfew__jval *o, const char *key)
{
    const curfew__jval *v = curfew__json_get(o, key);
    if (!v || v->type != CURFEW__J_ARR)
        th_fail(__FILE__, __LINE__, "no array \"%s\" in the record", key);
    return v;
}

/* How many blockers of the phase called phase have this name, and how many
 * of them did not end "ok". */
static int count_blockers(const curfew__jval *rec, const char *phase,
                          const char *name, int *not_ok)
{
    const curfew__jval *phases = jarr(rec, "phases");
    int n = 0;
    *not_ok = 0;
    for (size_t i = 0; i < phases->n; i++) {
        const curfew__jval *ph = &phases->items[i];
        const char *pn = curfew__json_str(curfew__json_get(ph, "name"));
        if (!pn || strcmp(pn, phase) != 0)
            continue;
        const curfew__jval *bl = jarr(ph, "blockers");
        for (size_t j = 0; j < bl->n; j++) {
            const char *bn =
                curfew__json_str(curfew__json_get(&bl->items[j], "name"));
            const char *res =
                curfew__json_str(curfew__json_get(&bl->items[j], "result"));
            if (bn && strcmp(bn, name) == 0) {
                n++;
                if (!res || strcmp(res, "ok") != 0)
                    (*not_ok)++;
            }
        }
    }
    return n;
}

/* I1: every write asked for before "persist" is on disk when persist
 * completes — checked from a blocker of the next phase, and again after
 * the process exited. A write asked for while persist waits, after the
 * io's own blocker finished, is waited for too: the io adds a blocker to
 * the waiting phase (B2), and the record shows it. After persist, requests
 * fail with -ESHUTDOWN (B5), never silently lost; the queue nobody closed
 * was closed by its phase (I5). */
TEST(io_phase_waits_for_writes)
{
    char dir[IO_PATH], rec_path[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(rec_path, sizeof(rec_path), dir, "record.json");
    const int n = 24;
    char ns[16];
    snprintf(ns, sizeof(ns), "%d", n);
    pid_t pid =
        th_spawn_child("io_phase_writer", dir, ns, rec_path, (char *)NULL);
    int st = th_wait_child(pid, 90000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);

    char p[IO_PATH], name[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        io_path(p, sizeof(p), dir, name);
        size_t len;
        char *data = io_read_file(p, &len);
        CHECK(data != NULL);
        uint64_t gen = 0;
        CHECK_EQ(io_parse_rec(data, len, &gen, NULL), 0);
        CHECK_EQ(gen, (uint64_t)i + 1000);
        const char *nl = memchr(data, '\n', len);
        CHECK(nl != NULL);
        CHECK_EQ(len - (size_t)(nl - data) - 1, early_size(i));
        free(data);
    }
    io_path(p, sizeof(p), dir, "late");
    size_t len;
    char *data = io_read_file(p, &len);
    CHECK(data != NULL);
    uint64_t gen = 0;
    CHECK_EQ(io_parse_rec(data, len, &gen, NULL), 0);
    CHECK_EQ(gen, 777);
    free(data);
    io_path(p, sizeof(p), dir, "too-late");
    CHECK(access(p, F_OK) != 0);

    /* The record: the io's blocker, and the one it added for the late
     * write, both in persist and both "ok". */
    data = io_read_file(rec_path, &len);
    CHECK(data != NULL);
    curfew__jval *rec = NULL;
    CHECK_EQ(curfew__json_parse(data, len, &rec, NULL, 0), 0);
    int not_ok;
    CHECK_EQ(count_blockers(rec, "persist", "settings io", &not_ok), 2);
    CHECK_EQ(not_ok, 0);
    CHECK_EQ(count_blockers(rec, "persist", "unclosed queue", &not_ok), 1);
    CHECK_EQ(not_ok, 0);
    curfew__json_free(rec);
    free(data);
    /* f0..f23, late, record.json; no temporary file. */
    CHECK_EQ(io_count_entries(dir), n + 2);
    io_rmtree(dir);
}

/* I1: opts.phase chooses the phase (default "persist"); an unknown phase
 * or a NULL coordinator or output is -EINVAL; a phase that completed
 * gives -ESHUTDOWN. The io's writes hold its own phase, not another. */
TEST(io_create_arguments_and_phase)
{
    curfew *cf = io_new_cf();
    curfew_io *io = (curfew_io *)&io;
    curfew_io_options o;
    memset(&o, 0, sizeof(o));
    o.phase = "no-such-phase";
    CHECK_EQ(curfew_io_create(cf, &o, &io), -EINVAL);
    CHECK(io == NULL);
    CHECK_EQ(curfew_io_create(NULL, NULL, &io), -EINVAL);
    CHECK_EQ(curfew_io_create(cf, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_io_destroy(NULL), -EINVAL);
    curfew_io_stats st;
    CHECK_EQ(curfew_io_stats_get(NULL, &st), -EINVAL);

    /* An io of "drain": drain waits for its write; persist, later, has
     * nothing of it. */
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "drained");
    curfew_io *drain_io = io_new_io(cf, "drain", 1);
    CHECK_EQ(curfew_io_stats_get(drain_io, &st), 0);
    CHECK_EQ(st.requested, 0);
    CHECK_EQ(curfew_write_atomic(drain_io, NULL, "x", 1, NULL, NULL, NULL),
             -EINVAL);
    CHECK_EQ(curfew_write_atomic(drain_io, "", "x", 1, NULL, NULL, NULL),
             -EINVAL);
    CHECK_EQ(curfew_write_atomic(drain_io, p, NULL, 1, NULL, NULL, NULL),
             -EINVAL);
    CHECK_EQ(curfew_write_atomic(NULL, p, "x", 1, NULL, NULL, NULL), -EINVAL);
    io_waiter w;
    io_waiter_init(&w);
    size_t len;
    char *rec = io_make_rec(5, 2000000, &len);
    CHECK_EQ(curfew_write_atomic(drain_io, p, rec, len, NULL, io_cb, &w), 0);
    free(rec);
    io_shutdown(cf, 30000);
    CHECK_EQ(io_waiter_calls(&w), 1); /* before the shutdown completed */
    CHECK_EQ(w.last, 0);
    CHECK_EQ(curfew_write_atomic(drain_io, p, "x", 1, NULL, NULL, NULL),
             -ESHUTDOWN);
    CHECK_EQ(curfew_io_create(cf, NULL, &io), -ESHUTDOWN);
    CHECK(io == NULL);
    CHECK_EQ(curfew_io_stats_get(drain_io, &st), 0);
    CHECK_EQ(st.requested, 1);
    CHECK_EQ(st.written, 1);
    io_destroy_io(drain_io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    io_rmtree(dir);
}

/* I1 with B6: an io destroyed before the shutdown takes its blocker away,
 * so its phase does not wait for it. */
TEST(io_destroyed_before_shutdown)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    CHECK_EQ(curfew_io_destroy(io), 0);
    int64_t t0 = th_now_ms();
    io_shutdown(cf, 10000);
    CHECK(th_now_ms() - t0 < 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* C6, I1: an io object costs no thread until it is used: creating it, and
 * a queue on it, starts none; the first write starts the I/O threads, at
 * most opts.threads of them. */
TEST(io_threads_on_first_use)
{
    io_warm_threads();
    curfew *cf = io_new_cf();
    int base = io_thread_count();
    curfew_io *io = io_new_io(cf, NULL, 3);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "q", &q), 0);
    CHECK_EQ(io_thread_count(), base);

    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_waiter w;
    io_waiter_init(&w);
    for (int i = 0; i < 12; i++) {
        char name[16];
        snprintf(name, sizeof(name), "t%d", i);
        io_path(p, sizeof(p), dir, name);
        CHECK_EQ(curfew_write_atomic(io, p, "x", 1, NULL, io_cb, &w), 0);
    }
    io_waiter_wait(&w, 12, 10000);
    int during = io_thread_count();
    CHECK(during > base);
    CHECK(during <= base + 3);
    CHECK_EQ(w.errors, 0);

    CHECK_EQ(curfew_queue_close(q, NULL, NULL), 0);
    int64_t end = th_now_ms() + 5000;
    while (curfew_queue_free(q) == -EBUSY && th_now_ms() < end)
        th_sleep_ms(1);
    io_destroy_io(io, 5000);
    CHECK_EQ(io_wait_thread_count(base, 10000), base);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    io_rmtree(dir);
}

static void never_fn(curfew_deferred *d, void *arg)
{
    (void)d;
    (void)arg;
}

/* C6, I4: a deferred task that is never armed costs no thread either (the
 * "save soon" task of a program is made at start-up and mostly idle). */
TEST(io_idle_deferred_costs_no_thread)
{
    io_warm_threads();
    curfew *cf = io_new_cf();
    int base = io_thread_count();
    curfew_io *io = io_new_io(cf, NULL, 0);
    curfew_deferred *d = NULL;
    CHECK_EQ(curfew_deferred_create(io, "idle", 1500, never_fn, NULL, &d), 0);
    CHECK_EQ(io_thread_count(), base);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I1, io.h: once the callback of the last write has run, nothing is owed
 * to the user and curfew_io_destroy() succeeds at once; it must not give
 * -EBUSY because the I/O thread that ran the callback is still tidying
 * up. Tried 300 times (100 under sanitizers): the window is small. Before the
 * callback, while the write is queued or running, it is -EBUSY. */
TEST(io_destroy_after_last_callback)
{
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "f");
    curfew *cf = io_new_cf();
    int busy = 0;
    /* Above malloc's mmap threshold: freeing the copy after the callback
     * takes a little while, as it does for a real program's data. */
    size_t len = 256 * 1024;
    char *data = calloc(1, len);
    CHECK(data != NULL);
    int tries = io_sanitized() ? 100 : 300;
    for (int i = 0; i < tries; i++) {
        curfew_io *io = io_new_io(cf, NULL, 1);
        io_waiter w;
        io_waiter_init(&w);
        CHECK_EQ(curfew_write_atomic(io, p, data, len, NULL, io_cb, &w), 0);
        if (i == 0)
            CHECK_EQ(curfew_io_destroy(io), -EBUSY);
        io_waiter_wait(&w, 1, 10000);
        int r = curfew_io_destroy(io);
        if (r == -EBUSY) {
            busy++;
            io_destroy_io(io, 5000);
        } else {
            CHECK_EQ(r, 0);
        }
        io_waiter_destroy(&w);
    }
    if (busy)
        th_fail(__FILE__, __LINE__,
                "curfew_io_destroy gave -EBUSY after the last callback in "
                "%d of %d tries",
                busy, tries);
    free(data);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

struct chain {
    curfew_io *io;
    char path[IO_PATH];
    atomic_int step;
    int last;
};

/* Each callback asks for the next write of the same path, five in all. */
static void chain_cb(int result, void *arg)
{
    struct chain *c = arg;
    CHECK_EQ(result, 0);
    int k = atomic_fetch_add(&c->step, 1) + 1;
    if (k >= c->last)
        return;
    char text[16];
    int n = snprintf(text, sizeof(text), "step %d", k + 1);
    th_sleep_ms(30);
    CHECK_EQ(
        curfew_write_atomic(c->io, c->path, text, (size_t)n, NULL, chain_cb, c),
        0);
}

/* I1: a callback may ask for another write (of the same path here), and
 * one asked for that way before the io's work ran out is part of it: the
 * phase waits for the whole chain. */
TEST(io_phase_waits_for_chained_writes)
{
    char dir[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    curfew *cf = io_new_cf();
    static struct chain c;
    memset(&c, 0, sizeof(c));
    c.io = io_new_io(cf, NULL, 2);
    c.last = 5;
    io_path(c.path, sizeof(c.path), dir, "chained");
    CHECK_EQ(curfew_write_atomic(c.io, c.path, "step 1", 6, NULL, chain_cb, &c),
             0);
    io_shutdown(cf, 20000);
    CHECK_EQ(atomic_load(&c.step), 5);
    CHECK(io_file_is(c.path, "step 5", 6));
    io_destroy_io(c.io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

struct held {
    io_gate gate;
    atomic_int entered;
};

static void held_op(void *arg)
{
    struct held *h = arg;
    atomic_store(&h->entered, 1);
    io_gate_wait(&h->gate);
}

/* I1 with W3: when "persist" completes because its crash timer expired
 * under CURFEW_TIMEOUT_CONTINUE (a write was still stuck behind a held I/O
 * thread), the phase has completed all the same: a new request is then
 * refused with -ESHUTDOWN, as after any completed phase. */
TEST(io_write_after_timed_out_phase)
{
    static const curfew_phase_config phases[] = {{"persist", CURFEW_NEVER, 300},
                                                 {"final", 0, 0}};
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 2;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    char dir[IO_PATH], p[IO_PATH], q2[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "stuck");
    io_path(q2, sizeof(q2), dir, "after");
    curfew_io *io = io_new_io(cf, "persist", 1);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "holder", &q), 0);
    static struct held h;
    io_gate_init(&h.gate);
    atomic_init(&h.entered, 0);
    CHECK_EQ(curfew_queue_post(q, held_op, &h), 0);
    io_wait_flag(&h.entered, 1, 5000);
    io_waiter w;
    io_waiter_init(&w);
    CHECK_EQ(curfew_write_atomic(io, p, "x", 1, NULL, io_cb, &w), 0);
    io_shutdown(cf, 20000); /* persist times out after 300 ms */
    CHECK_EQ(curfew_barrier_state(curfew_phase(cf, "persist")),
             CURFEW_COMPLETE);
    int r = curfew_write_atomic(io, q2, "y", 1, NULL, io_cb, &w);
    io_gate_open(&h.gate);
    io_waiter_wait(&w, r == 0 ? 2 : 1, 10000);
    CHECK_EQ(r, -ESHUTDOWN);
    CHECK(access(q2, F_OK) != 0);
    int64_t end = th_now_ms() + 5000;
    while (curfew_queue_free(q) == -EBUSY && th_now_ms() < end)
        th_sleep_ms(1);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    io_gate_destroy(&h.gate);
    io_rmtree(dir);
}
