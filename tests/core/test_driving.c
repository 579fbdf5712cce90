/* Tests for driving curfew: CONTRACT.md D1, D2, D4, D5.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core_util.h"
#include "harness.h"

#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------ */

static void sem_wait_ms(sem_t *s, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int r;
    while ((r = sem_timedwait(s, &ts)) != 0 && errno == EINTR)
        ;
    if (r != 0)
        th_fail(__FILE__, __LINE__, "semaphore not posted within %d ms", ms);
}

static const curfew_phase_config two_phases[] = {{.name = "p1"},
                                                 {.name = "p2"}};

/* ---- D1: a caller-driven loop ------------------------------------------- */

static int counting_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    atomic_fetch_add((atomic_int *)arg, 1);
    return CURFEW_DONE;
}

TEST(drive_dispatch_before_begin)
{
    /* D1, D2: before curfew_begin, curfew_dispatch does nothing and
     * returns 0: no trigger runs, no phase starts. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    atomic_int ran = 0;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "t",
                                counting_trigger, &ran, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "t2",
                                counting_trigger, &ran, NULL),
             0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(atomic_load(&ran), 0);
    CHECK_EQ(curfew_barrier_state(curfew_phase(cf, "stop-accepting")),
             CURFEW_NOT_STARTED);
    CHECK(curfew_current_phase(cf) == NULL);
    CHECK_EQ(curfew_is_complete(cf), 0);
    CHECK_EQ(curfew_dispatch(NULL), -EINVAL);
    CHECK_EQ(curfew_run(NULL), -EINVAL);

    /* After curfew_begin the same dispatch runs them, each once. */
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    CHECK_EQ(atomic_load(&ran), 2);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&ran), 2);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct threaded_blk {
    curfew_blocker self;
    pthread_t th;
    int started; /* set by the trigger (dispatching thread) */
    int delay_ms;
    int triggered;
    int rc; /* curfew_blocker_done's result, set by the thread */
};

static void *finish_later(void *arg)
{
    struct threaded_blk *b = arg;
    th_sleep_ms(b->delay_ms);
    b->rc = curfew_blocker_done(b->self);
    return NULL;
}

static int thread_trigger(curfew_blocker self, void *arg)
{
    struct threaded_blk *b = arg;
    b->self = self;
    b->triggered++;
    if (pthread_create(&b->th, NULL, finish_later, b) != 0)
        return -EAGAIN;
    b->started = 1;
    return CURFEW_PENDING;
}

#define NTB 8

TEST(drive_poll_loop)
{
    /* D1: poll(curfew_fd, curfew_timeout_ms) then curfew_dispatch until it
     * returns 1, with blockers finished from other threads. A completion
     * from another thread must make the descriptor readable: the loop
     * never sleeps through it. */
    static const curfew_phase_config ph[] = {
        {.name = "a"}, {.name = "b"}, {.name = "c"}, {.name = "d"}};
    curfew_config cfg = {.phases = ph, .phase_count = 4};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    static struct threaded_blk blk[NTB];
    memset(blk, 0, sizeof blk);
    for (int i = 0; i < NTB; i++) {
        blk[i].delay_ms = 5 + 7 * (i % 4);
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        CHECK_EQ(curfew_add_blocker(curfew_phase(cf, ph[i % 4].name), name,
                                    thread_trigger, &blk[i], NULL),
                 0);
    }
    CHECK_EQ(curfew_begin(cf), 0);
    int64_t end = th_now_ms() + 10000;
    int r, loops = 0;
    while ((r = curfew_dispatch(cf)) == 0) {
        CHECK(th_now_ms() < end);
        int t = curfew_timeout_ms(cf);
        CHECK(t >= -1);
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        /* -1 would block forever; 5 s is far beyond any blocker here. */
        int pr = poll(&p, 1, t < 0 ? 5000 : t);
        if (pr == 0 && t < 0)
            th_fail(__FILE__, __LINE__,
                    "curfew_fd stayed quiet for 5 s with no deadline while "
                    "the shutdown was still running: lost wake-up");
        CHECK(pr >= 0 || errno == EINTR);
        loops++;
    }
    CHECK_EQ(r, 1);
    CHECK(loops >= 1);
    CHECK_EQ(curfew_is_complete(cf), 1);
    for (int i = 0; i < NTB; i++) {
        CHECK_EQ(blk[i].started, 1);
        CHECK_EQ(pthread_join(blk[i].th, NULL), 0);
        CHECK_EQ(blk[i].triggered, 1);
        CHECK_EQ(blk[i].rc, 0);
    }
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- D2: curfew_run ----------------------------------------------------- */

struct run_helper {
    curfew *cf;
    curfew_blocker h[3];
    atomic_int begun;
    int rc_begin;
    int rc[3];
    int fail_last;
};

static void *run_helper_main(void *arg)
{
    struct run_helper *r = arg;
    th_sleep_ms(50);
    atomic_store(&r->begun, 1);
    r->rc_begin = curfew_begin(r->cf);
    th_sleep_ms(10);
    r->rc[0] = curfew_blocker_done(r->h[0]);
    th_sleep_ms(10);
    r->rc[1] = curfew_blocker_done(r->h[1]);
    th_sleep_ms(10);
    if (r->fail_last)
        r->rc[2] = curfew_blocker_fail(r->h[2], -EIO, "disk gone");
    else
        r->rc[2] = curfew_blocker_done(r->h[2]);
    return NULL;
}

struct on_thread {
    pthread_t main;
    atomic_int ran;
    atomic_int wrong_thread;
};

static int on_thread_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    struct on_thread *o = arg;
    atomic_fetch_add(&o->ran, 1);
    if (!pthread_equal(pthread_self(), o->main))
        atomic_store(&o->wrong_thread, 1);
    return CURFEW_DONE;
}

static int failing_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return -ENOSPC;
}

static void run_with_helper(int fail)
{
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    static struct run_helper r;
    memset(&r, 0, sizeof r);
    r.cf = cf;
    r.fail_last = fail;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "h0", NULL,
                                NULL, &r.h[0]),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "persist"), "h1", NULL, NULL,
                                &r.h[1]),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "final"), "h2", NULL, NULL,
                                &r.h[2]),
             0);
    static struct on_thread o;
    memset(&o, 0, sizeof o);
    o.main = pthread_self();
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "on-main",
                                on_thread_trigger, &o, NULL),
             0);
    curfew_blocker bad = {0};
    if (fail)
        CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "children"), "bad",
                                    failing_trigger, NULL, &bad),
                 0);

    pthread_t th;
    int64_t t0 = th_now_ms();
    CHECK_EQ(pthread_create(&th, NULL, run_helper_main, &r), 0);
    int rc = curfew_run(cf);
    int64_t took = th_now_ms() - t0;
    int begun = atomic_load(&r.begun);
    int complete = curfew_is_complete(cf);
    CHECK_EQ(pthread_join(th, NULL), 0);

    CHECK_EQ(rc, 0);
    CHECK_EQ(begun, 1); /* it waited for curfew_begin */
    CHECK_EQ(complete, 1);
    CHECK(took >= 45);
    CHECK(took < 10000);
    CHECK_EQ(r.rc_begin, 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(r.rc[i], 0);
    CHECK_EQ(atomic_load(&o.ran), 1);
    CHECK_EQ(atomic_load(&o.wrong_thread), 0);
    if (fail) {
        int err = 0;
        CHECK_EQ(curfew_blocker_result(r.h[2], &err), CURFEW_RESULT_ERROR);
        CHECK_EQ(err, -EIO);
        CHECK_EQ(curfew_blocker_result(bad, &err), CURFEW_RESULT_ERROR);
        CHECK_EQ(err, -ENOSPC);
    } else {
        CHECK_EQ(curfew_blocker_result(r.h[2], NULL), CURFEW_RESULT_OK);
    }

    /* D2: after completion curfew_run returns 0 at once. */
    t0 = th_now_ms();
    CHECK_EQ(curfew_run(cf), 0);
    CHECK(th_now_ms() - t0 < 1000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(drive_run_begin_from_thread)
{
    /* D2: curfew_run on the main thread blocks until another thread calls
     * curfew_begin, dispatches triggers on the main thread, and returns 0
     * once the shutdown completed. */
    run_with_helper(0);
}

TEST(drive_run_failed_blockers)
{
    /* D2, B3: curfew_run returns 0 also when blockers failed (a trigger
     * error and curfew_blocker_fail from another thread). */
    run_with_helper(1);
}

TEST(drive_run_after_complete)
{
    /* D2: curfew_run after a completed shutdown returns 0 at once. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_run(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK(th_now_ms() - t0 < 1000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(drive_run_begun_already)
{
    /* D2: curfew_run after curfew_begin on the same thread (nothing else
     * will wake it) drives the whole shutdown and returns 0. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    atomic_int ran = 0;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "threads"), "t",
                                counting_trigger, &ran, NULL),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(atomic_load(&ran), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static curfew *sig_cf;
static volatile sig_atomic_t sig_rc = 99;

static void on_sigusr2(int sig)
{
    (void)sig;
    sig_rc = curfew_begin_from_signal(sig_cf);
}

static void *raise_later(void *arg)
{
    (void)arg;
    th_sleep_ms(50);
    /* raise() delivers to this thread: only the descriptor can wake the
     * thread blocked in curfew_run. */
    raise(SIGUSR2);
    return NULL;
}

TEST(drive_run_begin_from_signal)
{
    /* D2, C3: curfew_run wakes when a signal handler on another thread
     * calls curfew_begin_from_signal. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    atomic_int ran = 0;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "t",
                                counting_trigger, &ran, NULL),
             0);
    sig_cf = cf;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr2;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGUSR2, &sa, &old), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, raise_later, NULL), 0);
    int64_t t0 = th_now_ms();
    int rc = curfew_run(cf);
    int64_t took = th_now_ms() - t0;
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(sigaction(SIGUSR2, &old, NULL), 0);
    CHECK_EQ(rc, 0);
    CHECK_EQ(sig_rc, 0);
    CHECK_EQ(atomic_load(&ran), 1);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK(took < 10000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- D4: events --------------------------------------------------------- */

#define EV_MAX 64

struct ev_rec {
    int type;
    char phase[32];
    char barrier[32];
    char blocker[32];
    char text[64];
    int error;
    int64_t duration_ms;
    int64_t elapsed_ms;
    int on_main;
};

struct ev_log {
    pthread_mutex_t mu;
    pthread_t main;
    int n;
    struct ev_rec ev[EV_MAX];
};

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "(null)");
}

static void ev_record(const curfew_event *ev, void *arg)
{
    struct ev_log *l = arg;
    pthread_mutex_lock(&l->mu);
    if (l->n < EV_MAX) {
        struct ev_rec *r = &l->ev[l->n++];
        r->type = (int)ev->type;
        copy_str(r->phase, sizeof r->phase, ev->phase);
        copy_str(r->barrier, sizeof r->barrier, ev->barrier);
        copy_str(r->blocker, sizeof r->blocker, ev->blocker);
        copy_str(r->text, sizeof r->text, ev->text);
        r->error = ev->error;
        r->duration_ms = ev->duration_ms;
        r->elapsed_ms = ev->elapsed_ms;
        r->on_main = pthread_equal(pthread_self(), l->main);
    }
    pthread_mutex_unlock(&l->mu);
}

static int eio_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return -EIO;
}

static int done_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_DONE;
}

static void check_event_sequence(struct ev_log *l)
{
    pthread_mutex_lock(&l->mu);
    struct ev_rec *e = l->ev;
    CHECK_EQ(l->n, 8);
    CHECK_EQ(e[0].type, CURFEW_EV_BEGIN);
    CHECK_EQ(e[1].type, CURFEW_EV_PHASE_BEGIN);
    CHECK_STR(e[1].phase, "p1");
    CHECK_EQ(e[2].type, CURFEW_EV_BLOCKER_FAILED);
    CHECK_STR(e[2].phase, "p1");
    CHECK_STR(e[2].blocker, "bad");
    CHECK_EQ(e[2].error, -EIO);
    CHECK_EQ(e[3].type, CURFEW_EV_BLOCKER_FAILED);
    CHECK_STR(e[3].phase, "p1");
    CHECK_STR(e[3].blocker, "bad2");
    CHECK_EQ(e[3].error, -EPIPE);
    CHECK(strstr(e[3].text, "pipe broke") != NULL);
    CHECK_EQ(e[4].type, CURFEW_EV_PHASE_END);
    CHECK_STR(e[4].phase, "p1");
    CHECK(e[4].duration_ms >= 0);
    CHECK_EQ(e[5].type, CURFEW_EV_PHASE_BEGIN);
    CHECK_STR(e[5].phase, "p2");
    CHECK_EQ(e[6].type, CURFEW_EV_PHASE_END);
    CHECK_STR(e[6].phase, "p2");
    /* p2 waited ~30 ms for its blocker. */
    CHECK(e[6].duration_ms >= 25);
    CHECK(e[6].duration_ms < 10000);
    CHECK_EQ(e[7].type, CURFEW_EV_COMPLETE);
    CHECK(e[7].duration_ms >= e[6].duration_ms);
    for (int i = 0; i < l->n; i++) {
        CHECK(e[i].elapsed_ms >= 0);
        if (i > 0)
            CHECK(e[i].elapsed_ms >= e[i - 1].elapsed_ms);
        /* A phase's barrier has the phase's name. */
        if (e[i].type == CURFEW_EV_PHASE_BEGIN ||
            e[i].type == CURFEW_EV_PHASE_END) {
            CHECK(strcmp(e[i].barrier, "(null)") == 0 ||
                  strcmp(e[i].barrier, e[i].phase) == 0);
        }
        if (!e[i].on_main)
            th_fail(__FILE__, __LINE__,
                    "event %d (type %d) not on the dispatching thread", i,
                    e[i].type);
    }
    pthread_mutex_unlock(&l->mu);
}

TEST(drive_events_sequence)
{
    /* D4: BEGIN, then per phase PHASE_BEGIN ... PHASE_END (with duration),
     * BLOCKER_FAILED for each failing blocker inside its phase, COMPLETE
     * last; all on the dispatching thread. */
    static struct ev_log l;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    l.main = pthread_self();
    curfew_config cfg = {.phases = two_phases,
                         .phase_count = 2,
                         .on_event = ev_record,
                         .event_arg = &l};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_barrier *p1 = curfew_phase(cf, "p1");
    curfew_blocker bad2 = {0}, slow = {0};
    CHECK_EQ(curfew_add_blocker(p1, "ok", done_trigger, NULL, NULL), 0);
    CHECK_EQ(curfew_add_blocker(p1, "bad", eio_trigger, NULL, NULL), 0);
    CHECK_EQ(curfew_add_blocker(p1, "bad2", NULL, NULL, &bad2), 0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p2"), "slow", NULL, NULL, &slow),
        0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    /* A positive errno is negated (header). */
    CHECK_EQ(curfew_blocker_fail(bad2, EPIPE, "pipe broke"), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "p2");
    th_sleep_ms(30);
    CHECK_EQ(curfew_blocker_done(slow), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    check_event_sequence(&l);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&l.mu);
}

struct ev_helper {
    curfew *cf;
    curfew_blocker bad2, slow;
    sem_t step;
    int rc[3];
};

static void *ev_helper_main(void *arg)
{
    struct ev_helper *h = arg;
    h->rc[0] = curfew_begin(h->cf);
    while (sem_wait(&h->step) != 0)
        ;
    h->rc[1] = curfew_blocker_fail(h->bad2, -EPIPE, "pipe broke");
    while (sem_wait(&h->step) != 0)
        ;
    th_sleep_ms(30);
    h->rc[2] = curfew_blocker_done(h->slow);
    return NULL;
}

TEST(drive_events_dispatching_thread)
{
    /* D4: when curfew_begin, curfew_blocker_fail and curfew_blocker_done
     * are called on another thread, every event still runs on the thread
     * that dispatches, in the same order. */
    static struct ev_log l;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    l.main = pthread_self();
    curfew_config cfg = {.phases = two_phases,
                         .phase_count = 2,
                         .on_event = ev_record,
                         .event_arg = &l};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    static struct ev_helper h;
    memset(&h, 0, sizeof h);
    h.cf = cf;
    sem_init(&h.step, 0, 0);
    curfew_barrier *p1 = curfew_phase(cf, "p1");
    CHECK_EQ(curfew_add_blocker(p1, "ok", done_trigger, NULL, NULL), 0);
    CHECK_EQ(curfew_add_blocker(p1, "bad", eio_trigger, NULL, NULL), 0);
    CHECK_EQ(curfew_add_blocker(p1, "bad2", NULL, NULL, &h.bad2), 0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p2"), "slow", NULL, NULL, &h.slow),
        0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, ev_helper_main, &h), 0);
    /* Wait for the begin on the other thread, then dispatch here. */
    int64_t end = th_now_ms() + 5000;
    while (!curfew_in_or_beyond(cf, "p1")) {
        CHECK(th_now_ms() < end);
        th_sleep_ms(1);
    }
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(p1), CURFEW_WAITING);
    sem_post(&h.step); /* fail bad2 */
    while (curfew_barrier_state(p1) != CURFEW_COMPLETE) {
        CHECK(th_now_ms() < end);
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        (void)poll(&p, 1, 10);
        CHECK(curfew_dispatch(cf) >= 0);
    }
    sem_post(&h.step); /* finish slow */
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(h.rc[0], 0);
    CHECK_EQ(h.rc[1], 0);
    CHECK_EQ(h.rc[2], 0);
    check_event_sequence(&l);
    CHECK_EQ(curfew_destroy(cf), 0);
    sem_destroy(&h.step);
    pthread_mutex_destroy(&l.mu);
}

TEST(drive_event_failed_phase)
{
    /* D4, B3: a BLOCKER_FAILED event names the blocker's own barrier and
     * phase, also when the blocker of a later phase fails while an earlier
     * phase runs, or fails before the shutdown began; each failure is
     * reported exactly once, after BEGIN. */
    static struct ev_log l;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    l.main = pthread_self();
    curfew_config cfg = {.phases = two_phases,
                         .phase_count = 2,
                         .on_event = ev_record,
                         .event_arg = &l};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_blocker early = {0}, late = {0}, held = {0};
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p2"), "early", NULL, NULL, &early),
        0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p2"), "late", NULL, NULL, &late),
        0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p1"), "held", NULL, NULL, &held),
        0);
    CHECK_EQ(curfew_blocker_fail(early, -EIO, "before begin"), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "p1");
    CHECK_EQ(curfew_blocker_fail(late, -EPIPE, "during p1"), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_blocker_done(held), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);

    pthread_mutex_lock(&l.mu);
    int nfailed = 0, saw_begin = 0;
    for (int i = 0; i < l.n; i++) {
        struct ev_rec *e = &l.ev[i];
        if (e->type == CURFEW_EV_BEGIN)
            saw_begin = 1;
        if (e->type != CURFEW_EV_BLOCKER_FAILED)
            continue;
        nfailed++;
        CHECK(saw_begin);
        CHECK_STR(e->barrier, "p2");
        if (strcmp(e->phase, "p2") != 0)
            th_fail(__FILE__, __LINE__,
                    "BLOCKER_FAILED for \"%s\" (a blocker of p2) has phase "
                    "\"%s\"",
                    e->blocker, e->phase);
        if (strcmp(e->blocker, "early") == 0)
            CHECK_EQ(e->error, -EIO);
        else if (strcmp(e->blocker, "late") == 0)
            CHECK_EQ(e->error, -EPIPE);
        else
            th_fail(__FILE__, __LINE__, "unexpected failed blocker %s",
                    e->blocker);
    }
    CHECK_EQ(nfailed, 2);
    CHECK_EQ(l.ev[l.n - 1].type, CURFEW_EV_COMPLETE);
    pthread_mutex_unlock(&l.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&l.mu);
}

/* ---- D5: one dispatcher at a time --------------------------------------- */

struct reentry {
    curfew *cf;
    int rc_dispatch;
    int rc_run;
    int calls;
};

static int reentering_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    struct reentry *r = arg;
    r->calls++;
    r->rc_dispatch = curfew_dispatch(r->cf);
    r->rc_run = curfew_run(r->cf);
    return CURFEW_DONE;
}

TEST(drive_dispatch_in_trigger)
{
    /* D5: curfew_dispatch and curfew_run from inside a trigger return
     * -EPERM (they never nest); the shutdown still completes. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    struct reentry r = {.cf = cf, .rc_dispatch = 99, .rc_run = 99};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "reenter",
                                reentering_trigger, &r, NULL),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    CHECK_EQ(r.calls, 1);
    CHECK_EQ(r.rc_dispatch, -EPERM);
    CHECK_EQ(r.rc_run, -EPERM);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct ev_reentry {
    curfew *cf;
    int calls;
    int rc_dispatch;
    int rc_run;
};

static void reentering_event(const curfew_event *ev, void *arg)
{
    struct ev_reentry *r = arg;
    if (ev->type != CURFEW_EV_PHASE_BEGIN || r->calls++)
        return;
    r->rc_dispatch = curfew_dispatch(r->cf);
    r->rc_run = curfew_run(r->cf);
}

TEST(drive_dispatch_in_event)
{
    /* D5: curfew_dispatch and curfew_run from inside on_event (a callback
     * on the dispatching thread) return -EPERM. */
    static struct ev_reentry r;
    memset(&r, 0, sizeof r);
    r.rc_dispatch = r.rc_run = 99;
    curfew_config cfg = {.on_event = reentering_event, .event_arg = &r};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    r.cf = cf;
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    CHECK(r.calls >= 1);
    CHECK_EQ(r.rc_dispatch, -EPERM);
    CHECK_EQ(r.rc_run, -EPERM);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct two_disp {
    curfew *cf;
    sem_t entered, release;
    int trigger_calls;
    int rc_t1;
};

static int blocking_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    struct two_disp *d = arg;
    d->trigger_calls++;
    sem_post(&d->entered);
    while (sem_wait(&d->release) != 0)
        ;
    return CURFEW_DONE;
}

static void *dispatcher_main(void *arg)
{
    struct two_disp *d = arg;
    d->rc_t1 = curfew_dispatch(d->cf);
    return NULL;
}

TEST(drive_dispatch_two_threads)
{
    /* D5: while one thread is inside a trigger (dispatching), a second
     * thread's curfew_dispatch and curfew_run return -EPERM at once. */
    static struct two_disp d;
    memset(&d, 0, sizeof d);
    sem_init(&d.entered, 0, 0);
    sem_init(&d.release, 0, 0);
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    d.cf = cf;
    curfew_blocker later = {0};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "block",
                                blocking_trigger, &d, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "final"), "later", NULL, NULL,
                                &later),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, dispatcher_main, &d), 0);
    sem_wait_ms(&d.entered, 5000);
    /* The other thread is inside curfew_dispatch, in the trigger. */
    int64_t t0 = th_now_ms();
    int rc_dispatch = curfew_dispatch(cf);
    int rc_run = curfew_run(cf);
    int64_t took = th_now_ms() - t0;
    sem_post(&d.release);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(rc_dispatch, -EPERM);
    CHECK_EQ(rc_run, -EPERM);
    CHECK(took < 1000);
    CHECK_EQ(d.trigger_calls, 1);
    CHECK_EQ(d.rc_t1, 0); /* "later" still holds the final phase */

    /* Once it left, this thread may dispatch. */
    CHECK_EQ(curfew_blocker_done(later), 0);
    CHECK_EQ(cu_drive(cf, 5000, -1), 1);
    CHECK_EQ(d.trigger_calls, 1);
    CHECK_EQ(curfew_destroy(cf), 0);
    sem_destroy(&d.entered);
    sem_destroy(&d.release);
}
