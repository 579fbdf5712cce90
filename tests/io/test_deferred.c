/* Deferred ("save soon") tasks: CONTRACT.md I4 (with I1 for writes a task
 * asks for while its phase waits).
 *
 * SPDX-License-Identifier: MIT
 *
 * Timing bounds are generous (hundreds of milliseconds) so the tests hold
 * under ThreadSanitizer on a loaded machine; each one still tells the
 * right behaviour from the wrong one by a wide margin.
 */
#define _GNU_SOURCE
#include "io_util.h"

#include <errno.h>
#include <unistd.h>

#define MAXRUNS 16

struct dtask {
    atomic_int runs;    /* runs finished */
    atomic_int started; /* runs started */
    int64_t start_ms[MAXRUNS], end_ms[MAXRUNS];
    pthread_t tid;
    int sleep_ms;
    int running_inside;  /* curfew_deferred_is_running() from the task */
    int finalize_inside; /* call curfew_deferred_finalize() from the task */
    int free_inside;     /* call curfew_deferred_free() from the task */
    int inside_result;
    /* Optional: the task writes "state <value>" to path through io. */
    curfew_io *io;
    const char *path;
    atomic_int *value;
    io_waiter *w;
};

static void task_fn(curfew_deferred *d, void *arg)
{
    struct dtask *t = arg;
    int k = atomic_load(&t->started);
    if (k < MAXRUNS)
        t->start_ms[k] = th_now_ms();
    t->tid = pthread_self();
    atomic_store(&t->started, k + 1);
    t->running_inside = curfew_deferred_is_running(d);
    if (t->finalize_inside)
        t->inside_result = curfew_deferred_finalize(d);
    if (t->free_inside)
        t->inside_result = curfew_deferred_free(d);
    if (t->io) {
        char text[64];
        int n = snprintf(text, sizeof(text), "state %d", atomic_load(t->value));
        int r = curfew_write_atomic(t->io, t->path, text, (size_t)n, NULL,
                                    io_cb, t->w);
        if (r != 0)
            th_fail(__FILE__, __LINE__, "write from the task: %s",
                    curfew_strerror(r));
    }
    if (t->sleep_ms)
        th_sleep_ms(t->sleep_ms);
    if (k < MAXRUNS)
        t->end_ms[k] = th_now_ms();
    atomic_fetch_add(&t->runs, 1);
}

static void dtask_init(struct dtask *t)
{
    memset(t, 0, sizeof(*t));
    atomic_init(&t->runs, 0);
    atomic_init(&t->started, 0);
}

static curfew_deferred *new_deferred(curfew_io *io, int32_t delay_ms,
                                     struct dtask *t)
{
    curfew_deferred *d = NULL;
    int r = curfew_deferred_create(io, "save soon", delay_ms, task_fn, t, &d);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_deferred_create: %s",
                curfew_strerror(r));
    return d;
}

static void wait_running(curfew_deferred *d, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    while (curfew_deferred_is_running(d) != 1) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "the task did not start");
        th_sleep_ms(1);
    }
}

/* I4: an armed run is never postponed: armed at t=0 and again at
 * t=delay/2, it runs once, at about t=delay, before the second arm plus
 * the delay (when postponing would run it; the delay is long so that a
 * run the load makes late still comes well before), on a thread of the io
 * object, not the caller's. */
TEST(io_deferred_arm_never_postpones)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    curfew_deferred *d = new_deferred(io, 2000, &t);
    CHECK_EQ(curfew_deferred_is_armed(d), 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_deferred_is_armed(d), 1);
    th_sleep_ms(1000);
    CHECK_EQ(atomic_load(&t.started), 0);
    int64_t arm2 = th_now_ms() - t0;
    CHECK_EQ(curfew_deferred_arm(d), 0);
    io_wait_flag(&t.runs, 1, 10000);
    int64_t at = t.start_ms[0] - t0;
    fprintf(stderr,
            "armed at 0 and %" PRId64 " ms, ran at %" PRId64
            " ms (postponed: %" PRId64 ")\n",
            arm2, at, arm2 + 2000);
    CHECK(at >= 1990);
    CHECK(at < arm2 + 2000);
    CHECK(!pthread_equal(t.tid, pthread_self()));
    CHECK_EQ(t.running_inside, 1);
    /* No second run either: wait past the time a postponed one would
     * come. */
    int64_t left = t0 + arm2 + 2000 + 500 - th_now_ms();
    if (left > 0)
        th_sleep_ms(left);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK_EQ(curfew_deferred_is_armed(d), 0);
    CHECK_EQ(curfew_deferred_is_running(d), 0);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct armer {
    pthread_t th;
    curfew_deferred *d;
    atomic_int *bad;
};

static void *arm_many(void *arg)
{
    struct armer *a = arg;
    for (int i = 0; i < 200; i++)
        if (curfew_deferred_arm(a->d) != 0)
            atomic_fetch_add(a->bad, 1);
    return NULL;
}

/* I4: many arms (800, from four threads) before the delay ends give one
 * run; an arm after that run gives one more. */
TEST(io_deferred_many_arms_one_run)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    curfew_deferred *d = new_deferred(io, 1500, &t);
    atomic_int bad;
    atomic_init(&bad, 0);
    struct armer a[4];
    for (int i = 0; i < 4; i++) {
        a[i].d = d;
        a[i].bad = &bad;
        CHECK_EQ(pthread_create(&a[i].th, NULL, arm_many, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(a[i].th, NULL);
    CHECK_EQ(atomic_load(&bad), 0);
    CHECK_EQ(atomic_load(&t.started), 0); /* every arm came before the run */
    io_wait_flag(&t.runs, 1, 5000);
    th_sleep_ms(700);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    io_wait_flag(&t.runs, 2, 5000);
    th_sleep_ms(300);
    CHECK_EQ(atomic_load(&t.runs), 2);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: armed while it runs, the task runs again, delay_ms after the run
 * ends (is_armed says so meanwhile), and only once more. */
TEST(io_deferred_arm_during_run)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    t.sleep_ms = 300;
    curfew_deferred *d = new_deferred(io, 200, &t);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    wait_running(d, 5000);
    CHECK_EQ(curfew_deferred_is_armed(d), 0);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_deferred_is_armed(d), 1);
    CHECK_EQ(curfew_deferred_is_running(d), 1);
    io_wait_flag(&t.runs, 2, 5000);
    int64_t gap = t.start_ms[1] - t.end_ms[0];
    fprintf(stderr, "second run %" PRId64 " ms after the first ended\n", gap);
    CHECK(gap >= 190);
    /* About the delay after: the timer may be late on a loaded machine. */
    CHECK(gap < 200 + 1000);
    th_sleep_ms(800);
    CHECK_EQ(atomic_load(&t.runs), 2);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: disarm cancels an armed run; during a run it cancels the run the
 * arm asked for but not the running one. */
TEST(io_deferred_disarm)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    t.sleep_ms = 200;
    curfew_deferred *d = new_deferred(io, 150, &t);
    CHECK_EQ(curfew_deferred_disarm(d), 0); /* nothing armed: fine */
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_deferred_disarm(d), 0);
    CHECK_EQ(curfew_deferred_is_armed(d), 0);
    th_sleep_ms(500);
    CHECK_EQ(atomic_load(&t.started), 0);

    CHECK_EQ(curfew_deferred_arm(d), 0);
    wait_running(d, 5000);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_deferred_is_armed(d), 1);
    CHECK_EQ(curfew_deferred_disarm(d), 0);
    CHECK_EQ(curfew_deferred_is_armed(d), 0);
    io_wait_flag(&t.runs, 1, 5000);
    th_sleep_ms(600);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: finalize runs an armed task at once (not after its 10 s delay) and
 * returns after the run; afterwards arm is refused with -ESHUTDOWN and a
 * second finalize gives -EALREADY. Finalize of a task never armed runs
 * nothing. */
TEST(io_deferred_finalize_armed)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    curfew_deferred *d = new_deferred(io, 10000, &t);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_deferred_finalize(d), 0);
    int64_t took = th_now_ms() - t0;
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK(took < 2000);
    CHECK_EQ(curfew_deferred_arm(d), -ESHUTDOWN);
    CHECK_EQ(curfew_deferred_is_armed(d), 0);
    CHECK_EQ(curfew_deferred_finalize(d), -EALREADY);
    CHECK_EQ(curfew_deferred_disarm(d), 0);
    th_sleep_ms(200);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK_EQ(curfew_deferred_free(d), 0);

    struct dtask u;
    dtask_init(&u);
    d = new_deferred(io, 50, &u);
    CHECK_EQ(curfew_deferred_finalize(d), 0);
    CHECK_EQ(curfew_deferred_arm(d), -ESHUTDOWN);
    th_sleep_ms(200);
    CHECK_EQ(atomic_load(&u.started), 0);
    CHECK_EQ(curfew_deferred_free(d), 0);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: finalize waits for a running task; if it was armed again during the
 * run, that run happens at once after it, before finalize returns. */
TEST(io_deferred_finalize_waits_for_running)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    t.sleep_ms = 300;
    curfew_deferred *d = new_deferred(io, 20, &t);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    wait_running(d, 5000);
    CHECK_EQ(curfew_deferred_finalize(d), 0);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK_EQ(curfew_deferred_is_running(d), 0);
    CHECK_EQ(curfew_deferred_free(d), 0);

    struct dtask u;
    dtask_init(&u);
    u.sleep_ms = 300;
    d = new_deferred(io, 5000, &u);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_deferred_finalize(d), 0); /* first run, at once */
    CHECK_EQ(atomic_load(&u.runs), 1);
    CHECK_EQ(curfew_deferred_free(d), 0);

    struct dtask v;
    dtask_init(&v);
    v.sleep_ms = 300;
    d = new_deferred(io, 20, &v);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    wait_running(d, 5000);
    CHECK_EQ(curfew_deferred_arm(d), 0); /* again, during the run */
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_deferred_finalize(d), 0);
    CHECK_EQ(atomic_load(&v.runs), 2);
    CHECK(th_now_ms() - t0 < 2000);
    CHECK(v.start_ms[1] >= v.end_ms[0]);
    CHECK_EQ(curfew_deferred_free(d), 0);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: finalize (and free) from inside the task is refused with -EDEADLK
 * instead of waiting for itself; the task is then finalized from outside
 * as usual. */
TEST(io_deferred_finalize_inside)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    t.finalize_inside = 1;
    curfew_deferred *d = new_deferred(io, 10, &t);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    io_wait_flag(&t.runs, 1, 5000);
    CHECK_EQ(t.inside_result, -EDEADLK);
    t.finalize_inside = 0;
    t.free_inside = 1;
    CHECK_EQ(curfew_deferred_arm(d), 0);
    io_wait_flag(&t.runs, 2, 5000);
    CHECK_EQ(t.inside_result, -EDEADLK);
    CHECK_EQ(curfew_deferred_finalize(d), 0);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: free finalizes first: an armed task runs before it is freed. */
TEST(io_deferred_free_runs_armed)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    curfew_deferred *d = new_deferred(io, 10000, &t);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    CHECK_EQ(curfew_io_destroy(io), -EBUSY); /* d is not freed yet */
    CHECK_EQ(curfew_deferred_free(d), 0);
    CHECK_EQ(atomic_load(&t.runs), 1);
    io_destroy_io(io, 5000);
    /* Freed before the shutdown, it does not hold its phase. */
    int64_t t0 = th_now_ms();
    io_shutdown(cf, 10000);
    CHECK(th_now_ms() - t0 < 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4 as a phase blocker: a task armed with a 10 s delay runs as soon as
 * its phase starts, not after the delay; a task never armed does not run;
 * afterwards arm gives -ESHUTDOWN and finalize -EALREADY. The task writes
 * the program's state through the io (the "downloads.json" pattern of the
 * source document): the phase waits for that write too (I1), so the file
 * holds the newest state when the shutdown ends. */
TEST(io_deferred_phase_blocker)
{
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(p, sizeof(p), dir, "downloads.json");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    io_waiter w;
    io_waiter_init(&w);
    atomic_int value;
    atomic_init(&value, 0);
    struct dtask t, idle;
    dtask_init(&t);
    dtask_init(&idle);
    t.io = io;
    t.path = p;
    t.value = &value;
    t.w = &w;
    t.sleep_ms = 100;
    curfew_deferred *d = new_deferred(io, 10000, &t);
    curfew_deferred *di = new_deferred(io, 10, &idle);
    for (int i = 1; i <= 5; i++) {
        atomic_store(&value, i);
        CHECK_EQ(curfew_deferred_arm(d), 0);
    }
    int64_t t0 = th_now_ms();
    io_shutdown(cf, 20000);
    int64_t took = th_now_ms() - t0;
    fprintf(stderr, "shutdown with a 10 s deferred armed: %" PRId64 " ms\n",
            took);
    CHECK(took < 5000);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK_EQ(atomic_load(&idle.started), 0);
    CHECK_EQ(io_waiter_calls(&w), 1);
    CHECK_EQ(w.last, 0);
    CHECK(io_file_is(p, "state 5", 7));
    CHECK_EQ(curfew_deferred_arm(d), -ESHUTDOWN);
    CHECK_EQ(curfew_deferred_arm(di), -ESHUTDOWN);
    CHECK_EQ(curfew_deferred_finalize(d), -EALREADY);
    CHECK_EQ(curfew_deferred_free(d), 0);
    CHECK_EQ(curfew_deferred_free(di), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    io_rmtree(dir);
}

static void *begin_later(void *arg)
{
    th_sleep_ms(100);
    curfew_begin(arg);
    return NULL;
}

/* I4 as a phase blocker: a task running when its phase starts is waited
 * for; the phase does not complete before the run ends. */
TEST(io_deferred_phase_waits_for_running)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    t.sleep_ms = 700;
    curfew_deferred *d = new_deferred(io, 0, &t);
    CHECK_EQ(curfew_deferred_arm(d), 0);
    wait_running(d, 5000);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, begin_later, cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int64_t done = th_now_ms();
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&t.runs), 1);
    CHECK(done >= t.end_ms[0]);
    CHECK_EQ(curfew_deferred_free(d), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: bad arguments are -EINVAL, never a crash. */
TEST(io_deferred_arguments)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask t;
    dtask_init(&t);
    curfew_deferred *d = (curfew_deferred *)&d;
    CHECK_EQ(curfew_deferred_create(NULL, "x", 10, task_fn, &t, &d), -EINVAL);
    CHECK(d == NULL);
    CHECK_EQ(curfew_deferred_create(io, NULL, 10, task_fn, &t, &d), -EINVAL);
    CHECK_EQ(curfew_deferred_create(io, "", 10, task_fn, &t, &d), -EINVAL);
    CHECK_EQ(curfew_deferred_create(io, "x", 10, NULL, &t, &d), -EINVAL);
    CHECK_EQ(curfew_deferred_create(io, "x", -1, task_fn, &t, &d), -EINVAL);
    CHECK_EQ(curfew_deferred_create(io, "x", 10, task_fn, &t, NULL), -EINVAL);
    CHECK_EQ(curfew_deferred_arm(NULL), -EINVAL);
    CHECK_EQ(curfew_deferred_disarm(NULL), -EINVAL);
    CHECK_EQ(curfew_deferred_finalize(NULL), -EINVAL);
    CHECK_EQ(curfew_deferred_is_armed(NULL), -EINVAL);
    CHECK_EQ(curfew_deferred_is_running(NULL), -EINVAL);
    CHECK_EQ(curfew_deferred_free(NULL), -EINVAL);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I4: tasks are independent: while one deferred task runs (for 3 s),
 * another armed with a 100 ms delay still runs at about 100 ms, and
 * finalizing a third runs it at once — a long task does not postpone the
 * armed runs of the others: both run and end before the long one ends. */
TEST(io_deferred_tasks_independent)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask a, b, c;
    dtask_init(&a);
    dtask_init(&b);
    dtask_init(&c);
    a.sleep_ms = 3000;
    curfew_deferred *da = new_deferred(io, 0, &a);
    curfew_deferred *db = new_deferred(io, 100, &b);
    curfew_deferred *dc = new_deferred(io, 10000, &c);
    CHECK_EQ(curfew_deferred_arm(da), 0);
    wait_running(da, 5000);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_deferred_arm(db), 0);
    CHECK_EQ(curfew_deferred_arm(dc), 0);
    io_wait_flag(&b.started, 1, 5000);
    int64_t at = b.start_ms[0] - t0;
    fprintf(stderr,
            "armed for 100 ms beside a running task: ran at %" PRId64 " ms\n",
            at);
    CHECK(at < 1000);
    CHECK_EQ(atomic_load(&a.runs), 0); /* b did not wait for a */
    int64_t t1 = th_now_ms();
    CHECK_EQ(curfew_deferred_finalize(dc), 0);
    CHECK_EQ(atomic_load(&c.runs), 1);
    CHECK_EQ(atomic_load(&a.runs), 0); /* nor did c */
    CHECK(th_now_ms() - t1 < 1000);
    CHECK_EQ(curfew_deferred_free(da), 0);
    CHECK_EQ(curfew_deferred_free(db), 0);
    CHECK_EQ(curfew_deferred_free(dc), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct pair {
    curfew_deferred *other;
    atomic_int result;
    atomic_int done;
};

static void finalize_other(curfew_deferred *d, void *arg)
{
    struct pair *p = arg;
    (void)d;
    atomic_store(&p->result, curfew_deferred_finalize(p->other));
    atomic_store(&p->done, 1);
}

/* I4: a task may finalize another task (a service's "save" task that
 * flushes a sub-service's one): the other, armed, runs at once and
 * finalize returns 0 — only finalizing itself is -EDEADLK. */
TEST(io_deferred_finalize_other_from_task)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    struct dtask b;
    dtask_init(&b);
    curfew_deferred *db = new_deferred(io, 10000, &b);
    static struct pair p;
    p.other = db;
    atomic_init(&p.result, 1);
    atomic_init(&p.done, 0);
    curfew_deferred *da = NULL;
    CHECK_EQ(curfew_deferred_create(io, "outer", 10, finalize_other, &p, &da),
             0);
    CHECK_EQ(curfew_deferred_arm(db), 0);
    CHECK_EQ(curfew_deferred_arm(da), 0);
    /* A deadlock shows as a timeout here (the process then exits). */
    io_wait_flag(&p.done, 1, 5000);
    CHECK_EQ(atomic_load(&p.result), 0);
    CHECK_EQ(atomic_load(&b.runs), 1);
    CHECK_EQ(curfew_deferred_free(da), 0);
    CHECK_EQ(curfew_deferred_free(db), 0);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}
