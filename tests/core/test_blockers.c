/* Tests for blockers (CONTRACT.md B1-B8) and coalesced completions (D3).
 *
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"
#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

/* Events, copied out of the callback (the strings are only lent to it). */
#define REC_MAX 128

struct rec_ev {
    curfew_event_type type;
    char phase[64];
    char barrier[64];
    char blocker[64];
    int error;
    int has_text;
    char text[320];
    int64_t duration_ms;
    pthread_t thread;
};

struct rec {
    pthread_mutex_t mu;
    int n;
    struct rec_ev ev[REC_MAX];
};

static void copy_str(char *dst, size_t size, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n >= size)
        n = size - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

static void rec_cb(const curfew_event *ev, void *arg)
{
    struct rec *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->n < REC_MAX) {
        struct rec_ev *e = &r->ev[r->n++];
        e->type = ev->type;
        copy_str(e->phase, sizeof e->phase, ev->phase);
        copy_str(e->barrier, sizeof e->barrier, ev->barrier);
        copy_str(e->blocker, sizeof e->blocker, ev->blocker);
        e->error = ev->error;
        e->has_text = ev->text != NULL;
        copy_str(e->text, sizeof e->text, ev->text);
        e->duration_ms = ev->duration_ms;
        e->thread = pthread_self();
    }
    pthread_mutex_unlock(&r->mu);
}

static int rec_count(struct rec *r, curfew_event_type type)
{
    int n = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        n += r->ev[i].type == type;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* The first event of this type for this blocker (or any, blocker NULL). */
static const struct rec_ev *rec_find(struct rec *r, curfew_event_type type,
                                     const char *blocker)
{
    const struct rec_ev *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n && !found; i++)
        if (r->ev[i].type == type &&
            (!blocker || strcmp(r->ev[i].blocker, blocker) == 0))
            found = &r->ev[i];
    pthread_mutex_unlock(&r->mu);
    return found;
}

/* A coordinator with the default phases; events go to r when r is set. */
static curfew *mk(struct rec *r)
{
    curfew_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (r) {
        memset(r, 0, sizeof *r);
        CHECK_EQ(pthread_mutex_init(&r->mu, NULL), 0);
        cfg.on_event = rec_cb;
        cfg.event_arg = r;
    }
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    CHECK(cf != NULL);
    return cf;
}

static curfew_barrier *phase(curfew *cf, const char *name)
{
    curfew_barrier *b = curfew_phase(cf, name);
    CHECK(b != NULL);
    return b;
}

/* Dispatches whenever curfew_fd() is readable or curfew_timeout_ms() says
 * so, until the shutdown completes. Fails after limit_ms, and says so when
 * the shutdown could have completed but the descriptor stayed quiet (D1). */
static void drive(curfew *cf, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    for (;;) {
        int r = curfew_dispatch(cf);
        CHECK(r == 0 || r == 1);
        if (r == 1)
            return;
        int64_t left = end - th_now_ms();
        if (left <= 0)
            th_fail(__FILE__, __LINE__,
                    "shutdown not complete after %" PRId64 " ms (phase %s)",
                    limit_ms, curfew_current_phase(cf));
        int t = curfew_timeout_ms(cf);
        if (t < 0 || t > left)
            t = (int)left;
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        int pr = poll(&p, 1, t);
        CHECK(pr >= 0 || errno == EINTR);
        if (pr == 0 && th_now_ms() >= end) {
            if (curfew_dispatch(cf) == 1)
                th_fail(__FILE__, __LINE__,
                        "shutdown could complete but curfew_fd() was never "
                        "readable (D1)");
            th_fail(__FILE__, __LINE__,
                    "shutdown not complete after %" PRId64 " ms (phase %s)",
                    limit_ms, curfew_current_phase(cf));
        }
    }
}

static void wait_flag(atomic_int *v, int want, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    while (atomic_load(v) < want) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "flag reached %d, wanted %d",
                    atomic_load(v), want);
        th_sleep_ms(1);
    }
}

/* A thread that finishes (or fails, or removes) a blocker after a delay. */
enum later_op { OP_DONE, OP_FAIL, OP_REMOVE };

struct later {
    pthread_t th;
    curfew_blocker b;
    int delay_ms;
    enum later_op op;
    int err;
    const char *what;
    int rc;
    /* Optional: before its delay, wait (at most 5 s) until *meet reaches
     * meet_want; done_ms is when the op ran. */
    atomic_int *meet;
    int meet_want;
    int64_t done_ms;
};

static void *later_main(void *p)
{
    struct later *l = p;
    if (l->meet) {
        int64_t end = th_now_ms() + 5000;
        while (atomic_load(l->meet) < l->meet_want && th_now_ms() < end)
            th_sleep_ms(1);
    }
    if (l->delay_ms)
        th_sleep_ms(l->delay_ms);
    switch (l->op) {
    case OP_DONE:
        l->rc = curfew_blocker_done(l->b);
        break;
    case OP_FAIL:
        l->rc = curfew_blocker_fail(l->b, l->err, l->what);
        break;
    case OP_REMOVE:
        l->rc = curfew_remove_blocker(l->b);
        break;
    }
    l->done_ms = th_now_ms();
    return NULL;
}

static void later_start(struct later *l)
{
    CHECK_EQ(pthread_create(&l->th, NULL, later_main, l), 0);
}

static int later_join(struct later *l)
{
    CHECK_EQ(pthread_join(l->th, NULL), 0);
    return l->rc;
}

/* curfew_run() on its own thread, with a bounded wait for it. */
struct runner {
    curfew *cf;
    pthread_t th;
    atomic_int finished;
    int rc;
};

static void *runner_main(void *p)
{
    struct runner *r = p;
    r->rc = curfew_run(r->cf);
    atomic_store(&r->finished, 1);
    return NULL;
}

static void runner_start(struct runner *r, curfew *cf)
{
    r->cf = cf;
    r->rc = 99;
    atomic_init(&r->finished, 0);
    CHECK_EQ(pthread_create(&r->th, NULL, runner_main, r), 0);
}

static int runner_wait(struct runner *r, int64_t limit_ms)
{
    wait_flag(&r->finished, 1, limit_ms);
    CHECK_EQ(pthread_join(r->th, NULL), 0);
    return r->rc;
}

static int is_valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        if (c < 0x80)
            len = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef)
            len = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            len = 4;
        else
            return 0;
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

static int result_of(curfew_blocker b, int *err)
{
    *err = 12345;
    return curfew_blocker_result(b, err);
}

/* ---- B1: call sites and handles ----------------------------------------- */

TEST(blocker_add_records_call_site)
{
    /* B1, B5: the macro passes __FILE__, __LINE__ and __func__ */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker h = {0};
    int line = __LINE__ + 1;
    int rc = curfew_add_blocker(drain, "", NULL, NULL, &h);
    CHECK_EQ(rc, -EINVAL);

    curfew_broken_registration br[2];
    memset(br, 0, sizeof br);
    CHECK_EQ(curfew_broken_registrations(cf, br, 2), 1);
    CHECK_STR(br[0].name, "");
    CHECK_EQ(br[0].error, -EINVAL);
    CHECK_STR(br[0].barrier, "drain");
    CHECK_STR(br[0].file, __FILE__);
    CHECK_EQ(br[0].line, line);
    CHECK_STR(br[0].func, __func__);

    /* The _at form records exactly what it is given. */
    CHECK_EQ(curfew_add_blocker_at(drain, NULL, NULL, NULL, NULL, "elsewhere.c",
                                   4242, "some_function"),
             -EINVAL);
    CHECK_EQ(curfew_broken_registrations(cf, br, 2), 2);
    CHECK_STR(br[1].name, "(null)");
    CHECK_STR(br[1].file, "elsewhere.c");
    CHECK_EQ(br[1].line, 4242);
    CHECK_STR(br[1].func, "some_function");
    /* The first one is unchanged. */
    CHECK_EQ(br[0].line, line);

    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_handle_is_value)
{
    /* B1: a handle is a value {cf, id}; ids are nonzero and distinct */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker a = {0}, b = {0};
    CHECK_EQ(curfew_add_blocker(drain, "a", NULL, NULL, &a), 0);
    CHECK_EQ(curfew_add_blocker(drain, "b", NULL, NULL, &b), 0);
    CHECK(a.cf == cf);
    CHECK(b.cf == cf);
    CHECK(a.id != 0);
    CHECK(b.id != 0);
    CHECK(a.id != b.id);

    /* A copy is the same blocker. */
    curfew_blocker copy = a;
    char name[16];
    CHECK_EQ(curfew_blocker_describe(copy, name, sizeof name, NULL, 0), 0);
    CHECK_STR(name, "a");
    CHECK_EQ(curfew_blocker_describe(b, name, sizeof name, NULL, 0), 0);
    CHECK_STR(name, "b");
    CHECK_EQ(curfew_blocker_done(copy), 0);
    CHECK_EQ(curfew_blocker_done(a), -EALREADY);
    CHECK_EQ(curfew_blocker_done(b), 0);

    /* The name was copied. */
    char buf[8] = "temp";
    curfew_blocker c = {0};
    CHECK_EQ(curfew_add_blocker(drain, buf, NULL, NULL, &c), 0);
    strcpy(buf, "XXXX");
    CHECK_EQ(curfew_blocker_describe(c, name, sizeof name, NULL, 0), 0);
    CHECK_STR(name, "temp");
    CHECK(c.id != a.id && c.id != b.id);
    CHECK_EQ(curfew_blocker_done(c), 0);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- B2: triggers ------------------------------------------------------- */

static struct {
    atomic_int sa_calls, drain_calls;
    pthread_t sa_thread, drain_thread;
    char phase_at_drain[64];
    int drain_state_at, sa_state_at;
    curfew_barrier *sa, *drain;
    curfew_blocker sa_self;
} g2;

static int t2_sa(curfew_blocker self, void *arg)
{
    (void)arg;
    g2.sa_thread = pthread_self();
    g2.sa_self = self;
    atomic_fetch_add(&g2.sa_calls, 1);
    return CURFEW_PENDING;
}

static int t2_drain(curfew_blocker self, void *arg)
{
    curfew *cf = arg;
    (void)self;
    g2.drain_thread = pthread_self();
    copy_str(g2.phase_at_drain, sizeof g2.phase_at_drain,
             curfew_current_phase(cf));
    g2.drain_state_at = curfew_barrier_state(g2.drain);
    g2.sa_state_at = curfew_barrier_state(g2.sa);
    atomic_fetch_add(&g2.drain_calls, 1);
    return CURFEW_DONE;
}

TEST(blocker_trigger_on_dispatching_thread)
{
    /* B2, D2: triggers run on the dispatching thread when their barrier
     * starts waiting, not before */
    curfew *cf = mk(NULL);
    g2.sa = phase(cf, "stop-accepting");
    g2.drain = phase(cf, "drain");
    curfew_blocker sa = {0};
    CHECK_EQ(curfew_add_blocker(g2.sa, "sa", t2_sa, NULL, &sa), 0);
    CHECK_EQ(curfew_add_blocker(g2.drain, "dr", t2_drain, cf, NULL), 0);

    /* Before curfew_begin nothing runs. */
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(atomic_load(&g2.sa_calls), 0);

    struct runner r;
    runner_start(&r, cf);
    th_sleep_ms(50);
    CHECK_EQ(atomic_load(&g2.sa_calls), 0);
    CHECK_EQ(atomic_load(&r.finished), 0);

    CHECK_EQ(curfew_begin(cf), 0);
    wait_flag(&g2.sa_calls, 1, 5000);
    th_sleep_ms(100);
    /* drain has not started: its trigger has not run. */
    CHECK_EQ(atomic_load(&g2.drain_calls), 0);
    CHECK_EQ(curfew_barrier_state(g2.drain), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_barrier_state(g2.sa), CURFEW_WAITING);
    CHECK_STR(curfew_current_phase(cf), "stop-accepting");

    CHECK_EQ(curfew_blocker_done(sa), 0);
    CHECK_EQ(runner_wait(&r, 10000), 0);

    CHECK_EQ(atomic_load(&g2.sa_calls), 1);
    CHECK_EQ(atomic_load(&g2.drain_calls), 1);
    CHECK(pthread_equal(g2.sa_thread, r.th));
    CHECK(pthread_equal(g2.drain_thread, r.th));
    CHECK(!pthread_equal(g2.drain_thread, pthread_self()));
    /* The trigger got its own handle. */
    CHECK(g2.sa_self.cf == cf);
    CHECK_EQ(g2.sa_self.id, sa.id);
    /* drain's trigger ran while drain waited, after stop-accepting ended. */
    CHECK_STR(g2.phase_at_drain, "drain");
    CHECK_EQ(g2.drain_state_at, CURFEW_WAITING);
    CHECK_EQ(g2.sa_state_at, CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static atomic_int g_calls;
static pthread_t g_trigger_thread;

static int t_done(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    g_trigger_thread = pthread_self();
    atomic_fetch_add(&g_calls, 1);
    return CURFEW_DONE;
}

static int t_pending(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    g_trigger_thread = pthread_self();
    atomic_fetch_add(&g_calls, 1);
    return CURFEW_PENDING;
}

TEST(blocker_trigger_done_finishes)
{
    /* B2: CURFEW_DONE from the trigger finishes the blocker */
    curfew *cf = mk(NULL);
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(phase(cf, "drain"), "quick", t_done, NULL, &b),
             0);
    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_PENDING);
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, NULL, 0), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&g_calls), 1);
    CHECK(pthread_equal(g_trigger_thread, pthread_self()));
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_OK);
    CHECK_EQ(err, 0);
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, NULL, 0), 1);
    CHECK_EQ(curfew_blocker_done(b), -EALREADY);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_trigger_pending_done_from_thread)
{
    /* B2, B4: CURFEW_PENDING waits for curfew_blocker_done from a thread */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(drain, "slow", t_pending, NULL, &b), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(atomic_load(&g_calls), 1);
    CHECK(pthread_equal(g_trigger_thread, pthread_self()));
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_WAITING);
    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_PENDING);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_is_complete(cf), 0);

    struct later l = {.b = b, .delay_ms = 100, .op = OP_DONE};
    later_start(&l);
    drive(cf, 10000);
    CHECK(th_now_ms() - t0 >= 95);
    CHECK_EQ(later_join(&l), 0);
    CHECK_EQ(atomic_load(&g_calls), 1);
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_OK);
    CHECK_EQ(err, 0);
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_null_trigger_waits_for_done)
{
    /* B2: a NULL trigger means: wait for done */
    curfew *cf = mk(NULL);
    curfew_barrier *persist = phase(cf, "persist");
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(persist, "flush", NULL, NULL, &b), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "persist");
    CHECK_EQ(curfew_in_or_beyond(cf, "persist"), 1);
    CHECK_EQ(curfew_in_or_beyond(cf, "telemetry"), 0);
    CHECK_EQ(curfew_barrier_state(persist), CURFEW_WAITING);
    th_sleep_ms(20);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "persist");

    struct later l = {.b = b, .delay_ms = 30, .op = OP_DONE};
    later_start(&l);
    drive(cf, 10000);
    CHECK_EQ(later_join(&l), 0);
    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_OK);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static struct {
    curfew_barrier *drain;
    int add_rc;
    curfew_blocker added;
    atomic_int late_calls;
    curfew_blocker late_self;
    pthread_t late_thread;
} g2b;

static int t2_late(curfew_blocker self, void *arg)
{
    (void)arg;
    g2b.late_self = self;
    g2b.late_thread = pthread_self();
    atomic_fetch_add(&g2b.late_calls, 1);
    return CURFEW_PENDING;
}

static int t2_adder(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    g2b.add_rc =
        curfew_add_blocker(g2b.drain, "late", t2_late, NULL, &g2b.added);
    return CURFEW_DONE;
}

TEST(blocker_added_from_trigger_is_waited_for)
{
    /* B2: a blocker added while its barrier waits (here from another
     * blocker's trigger) is triggered on a later dispatch, and the wait
     * waits for it */
    curfew *cf = mk(NULL);
    g2b.drain = phase(cf, "drain");
    CHECK_EQ(curfew_add_blocker(g2b.drain, "adder", t2_adder, NULL, NULL), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(g2b.add_rc, 0);
    /* "On the next dispatch": allow it to take one more call. */
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(atomic_load(&g2b.late_calls), 1);
    CHECK(pthread_equal(g2b.late_thread, pthread_self()));
    CHECK_EQ(g2b.late_self.id, g2b.added.id);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_barrier_state(g2b.drain), CURFEW_WAITING);

    CHECK_EQ(curfew_blocker_done(g2b.added), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&g2b.late_calls), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct adder_arg {
    curfew_barrier *barrier;
    curfew_blocker out;
    int rc;
};

static void *adder_thread(void *p)
{
    struct adder_arg *a = p;
    a->rc =
        curfew_add_blocker(a->barrier, "from-thread", t2_late, NULL, &a->out);
    return NULL;
}

TEST(blocker_added_from_thread_is_waited_for)
{
    /* B2, D1: a blocker added from another thread while its barrier waits
     * wakes the dispatcher, is triggered there, and is waited for */
    curfew *cf = mk(NULL);
    curfew_barrier *sa = phase(cf, "stop-accepting");
    curfew_blocker hold = {0};
    CHECK_EQ(curfew_add_blocker(sa, "hold", NULL, NULL, &hold), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_barrier_state(sa), CURFEW_WAITING);

    struct adder_arg a = {.barrier = sa, .rc = 99};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, adder_thread, &a), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(a.rc, 0);
    CHECK_EQ(atomic_load(&g2b.late_calls), 0);

    /* There is work: the descriptor says so. */
    struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 5000), 1);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(atomic_load(&g2b.late_calls), 1);
    CHECK(pthread_equal(g2b.late_thread, pthread_self()));
    CHECK_EQ(g2b.late_self.id, a.out.id);

    /* The first blocker finishing is not enough. */
    CHECK_EQ(curfew_blocker_done(hold), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "stop-accepting");
    CHECK_EQ(curfew_barrier_state(sa), CURFEW_WAITING);

    CHECK_EQ(curfew_blocker_done(a.out), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&g2b.late_calls), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- B3: failures ------------------------------------------------------- */

static int t_eio(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    atomic_fetch_add(&g_calls, 1);
    return -EIO;
}

TEST(blocker_trigger_error_counts_as_finished)
{
    /* B3, D4: a negative trigger result fails the blocker; the phase goes
     * on and on_event gets BLOCKER_FAILED */
    struct rec r;
    curfew *cf = mk(&r);
    curfew_blocker b = {0}, ok = {0};
    CHECK_EQ(curfew_add_blocker(phase(cf, "drain"), "broken", t_eio, NULL, &b),
             0);
    CHECK_EQ(
        curfew_add_blocker(phase(cf, "persist"), "fine", t_done, NULL, &ok), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&g_calls), 2);

    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -EIO);
    CHECK_EQ(result_of(ok, &err), CURFEW_RESULT_OK);
    CHECK_EQ(err, 0);
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, NULL, 0), 1);
    CHECK_EQ(curfew_blocker_done(b), -EALREADY);

    CHECK_EQ(rec_count(&r, CURFEW_EV_BLOCKER_FAILED), 1);
    const struct rec_ev *e = rec_find(&r, CURFEW_EV_BLOCKER_FAILED, "broken");
    CHECK(e != NULL);
    CHECK_EQ(e->error, -EIO);
    CHECK_STR(e->phase, "drain");
    CHECK_STR(e->barrier, "drain");
    CHECK(e->has_text);
    CHECK(pthread_equal(e->thread, pthread_self()));
    CHECK_EQ(rec_count(&r, CURFEW_EV_COMPLETE), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&r.mu);
}

TEST(blocker_fail_counts_as_finished)
{
    /* B3, D4: curfew_blocker_fail from a thread finishes the blocker as
     * failed; the error and text reach on_event on the dispatching thread */
    struct rec r;
    curfew *cf = mk(&r);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(drain, "writer", t_pending, NULL, &b), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");

    struct later l = {
        .b = b, .delay_ms = 20, .op = OP_FAIL, .err = -EIO, .what = "disk"};
    later_start(&l);
    drive(cf, 10000);
    CHECK_EQ(later_join(&l), 0);

    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -EIO);
    CHECK_EQ(curfew_blocker_fail(b, -EIO, "again"), -EALREADY);
    CHECK_EQ(curfew_blocker_done(b), -EALREADY);
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -EIO);

    CHECK_EQ(rec_count(&r, CURFEW_EV_BLOCKER_FAILED), 1);
    const struct rec_ev *e = rec_find(&r, CURFEW_EV_BLOCKER_FAILED, "writer");
    CHECK(e != NULL);
    CHECK_EQ(e->error, -EIO);
    CHECK(e->has_text);
    CHECK_STR(e->text, "disk");
    CHECK_STR(e->phase, "drain");
    CHECK(pthread_equal(e->thread, pthread_self()));
    CHECK_EQ(rec_count(&r, CURFEW_EV_COMPLETE), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&r.mu);
}

TEST(blocker_fail_error_normalised)
{
    /* B3: err 0 becomes -ECANCELED, a positive err is negated */
    struct rec r;
    curfew *cf = mk(&r);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker z = {0}, pos = {0}, neg = {0};
    CHECK_EQ(curfew_add_blocker(drain, "zero", NULL, NULL, &z), 0);
    CHECK_EQ(curfew_add_blocker(drain, "positive", NULL, NULL, &pos), 0);
    CHECK_EQ(curfew_add_blocker(drain, "negative", NULL, NULL, &neg), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);

    CHECK_EQ(curfew_blocker_fail(z, 0, NULL), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_fail(pos, EIO, "pos"), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_blocker_fail(neg, -ENOSPC, "neg"), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);

    int err;
    CHECK_EQ(result_of(z, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -ECANCELED);
    CHECK_EQ(result_of(pos, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -EIO);
    CHECK_EQ(result_of(neg, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -ENOSPC);
    CHECK_EQ(curfew_blocker_result(neg, NULL), CURFEW_RESULT_ERROR);

    CHECK_EQ(rec_count(&r, CURFEW_EV_BLOCKER_FAILED), 3);
    const struct rec_ev *e = rec_find(&r, CURFEW_EV_BLOCKER_FAILED, "zero");
    CHECK(e != NULL);
    CHECK_EQ(e->error, -ECANCELED);
    e = rec_find(&r, CURFEW_EV_BLOCKER_FAILED, "positive");
    CHECK(e != NULL);
    CHECK_EQ(e->error, -EIO);
    CHECK_STR(e->text, "pos");
    e = rec_find(&r, CURFEW_EV_BLOCKER_FAILED, "negative");
    CHECK(e != NULL);
    CHECK_EQ(e->error, -ENOSPC);
    CHECK_STR(e->text, "neg");
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&r.mu);
}

/* ---- B4: done ----------------------------------------------------------- */

TEST(blocker_done_twice)
{
    /* B4: the first done finishes, later ones return -EALREADY */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker b = {0}, c = {0};
    CHECK_EQ(curfew_add_blocker(drain, "b", t_pending, NULL, &b), 0);
    CHECK_EQ(curfew_add_blocker(drain, "c", NULL, NULL, &c), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_done(b), 0);
    CHECK_EQ(curfew_blocker_done(b), -EALREADY);
    CHECK_EQ(curfew_blocker_done(b), -EALREADY);
    CHECK_EQ(curfew_blocker_fail(b, -EIO, "late"), -EALREADY);
    /* The extra calls did not count for c. */
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_blocker_done(c), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_blocker_done(c), -EALREADY);
    CHECK_EQ(curfew_blocker_done(b), -EALREADY);
    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_OK);
    CHECK_EQ(err, 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_done_unknown_id)
{
    /* B4: an id that was never handed out gives -ENOENT */
    curfew *cf = mk(NULL);
    curfew_blocker real = {0};
    CHECK_EQ(curfew_add_blocker(phase(cf, "drain"), "real", NULL, NULL, &real),
             0);
    const uint64_t made_up[] = {UINT64_MAX, 0x0123456789abcdefull,
                                0x7fffffff00000000ull | 77u, 0xdead0000beefull};
    for (size_t i = 0; i < sizeof made_up / sizeof made_up[0]; i++) {
        CHECK(made_up[i] != real.id);
        curfew_blocker f = {cf, made_up[i]};
        CHECK_EQ(curfew_blocker_done(f), -ENOENT);
        CHECK_EQ(curfew_blocker_fail(f, -EIO, "x"), -ENOENT);
        CHECK_EQ(curfew_remove_blocker(f), -ENOENT);
        CHECK_EQ(curfew_blocker_status(f, "x"), -ENOENT);
        CHECK_EQ(curfew_blocker_describe(f, NULL, 0, NULL, 0), -ENOENT);
        CHECK_EQ(curfew_blocker_result(f, NULL), -ENOENT);
    }
    /* The real one is untouched. */
    int err;
    CHECK_EQ(result_of(real, &err), CURFEW_RESULT_PENDING);
    CHECK_EQ(curfew_blocker_done(real), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_done_zero_handle)
{
    /* B4, B1: a zero handle is never valid; a NULL coordinator is -EINVAL */
    curfew *cf = mk(NULL);
    curfew_blocker zero = {0};
    CHECK_EQ(curfew_blocker_done(zero), -EINVAL);
    CHECK_EQ(curfew_blocker_fail(zero, -EIO, "x"), -EINVAL);

    curfew_blocker zid = {cf, 0};
    int rc = curfew_blocker_done(zid);
    CHECK(rc == -ENOENT || rc == -EINVAL);
    rc = curfew_blocker_fail(zid, -EIO, NULL);
    CHECK(rc == -ENOENT || rc == -EINVAL);
    rc = curfew_remove_blocker(zid);
    CHECK(rc == -ENOENT || rc == -EINVAL);
    rc = curfew_blocker_result(zid, NULL);
    CHECK(rc == -ENOENT || rc == -EINVAL);
    rc = curfew_blocker_describe(zid, NULL, 0, NULL, 0);
    CHECK(rc == -ENOENT || rc == -EINVAL);
    rc = curfew_blocker_status(zid, "x");
    CHECK(rc == -ENOENT || rc == -EINVAL);

    /* ... also once blockers exist. */
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(phase(cf, "drain"), "b", NULL, NULL, &b), 0);
    rc = curfew_blocker_done(zid);
    CHECK(rc == -ENOENT || rc == -EINVAL);
    CHECK_EQ(curfew_blocker_result(b, NULL), CURFEW_RESULT_PENDING);
    CHECK_EQ(curfew_blocker_done(b), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_done_before_trigger)
{
    /* B4: done before the trigger ran finishes without calling it */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_barrier *children = phase(cf, "children");
    curfew_blocker early = {0}, hold = {0}, mid = {0};
    CHECK_EQ(curfew_add_blocker(drain, "early", t_pending, NULL, &early), 0);
    CHECK_EQ(curfew_blocker_done(early), 0);
    CHECK_EQ(curfew_blocker_done(early), -EALREADY);
    int err;
    CHECK_EQ(result_of(early, &err), CURFEW_RESULT_OK);

    /* And once shutdown runs: added while waiting, done before dispatch. */
    CHECK_EQ(curfew_add_blocker(children, "hold", NULL, NULL, &hold), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "children");
    CHECK_EQ(curfew_add_blocker(children, "mid", t_pending, NULL, &mid), 0);
    CHECK_EQ(curfew_blocker_done(mid), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_done(hold), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);

    CHECK_EQ(atomic_load(&g_calls), 0);
    CHECK_EQ(result_of(mid, &err), CURFEW_RESULT_OK);
    CHECK_EQ(result_of(early, &err), CURFEW_RESULT_OK);
    CHECK_EQ(curfew_destroy(cf), 0);
}

#define RACERS 8

static struct {
    pthread_barrier_t start, end;
    curfew_blocker b;
    int rc[RACERS];
    int rounds;
} g4;

static void *racer_main(void *p)
{
    int me = (int)(intptr_t)p;
    for (int i = 0; i < g4.rounds; i++) {
        pthread_barrier_wait(&g4.start);
        g4.rc[me] = curfew_blocker_done(g4.b);
        pthread_barrier_wait(&g4.end);
    }
    return NULL;
}

static void race_rounds(curfew *cf, curfew_barrier *barrier, int rounds,
                        int dispatch)
{
    pthread_t th[RACERS];
    g4.rounds = rounds;
    CHECK_EQ(pthread_barrier_init(&g4.start, NULL, RACERS + 1), 0);
    CHECK_EQ(pthread_barrier_init(&g4.end, NULL, RACERS + 1), 0);
    for (int i = 0; i < RACERS; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, racer_main, (void *)(intptr_t)i),
                 0);
    for (int round = 0; round < rounds; round++) {
        CHECK_EQ(curfew_add_blocker(barrier, "raced", NULL, NULL, &g4.b), 0);
        if (dispatch)
            CHECK_EQ(curfew_dispatch(cf), 0);
        pthread_barrier_wait(&g4.start);
        pthread_barrier_wait(&g4.end);
        int zeros = 0, already = 0;
        for (int i = 0; i < RACERS; i++) {
            zeros += g4.rc[i] == 0;
            already += g4.rc[i] == -EALREADY;
        }
        CHECK_EQ(zeros, 1);
        CHECK_EQ(already, RACERS - 1);
        CHECK_EQ(curfew_blocker_result(g4.b, NULL), CURFEW_RESULT_OK);
    }
    for (int i = 0; i < RACERS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&g4.start);
    pthread_barrier_destroy(&g4.end);
}

TEST(blocker_done_race_8_threads)
{
    /* B4: done from 8 threads at once: exactly one 0, the rest -EALREADY,
     * both before shutdown and while the barrier waits */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    race_rounds(cf, drain, 200, 0);

    curfew_blocker hold = {0};
    CHECK_EQ(curfew_add_blocker(drain, "hold", NULL, NULL, &hold), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    race_rounds(cf, drain, 200, 1);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_blocker_done(hold), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_recycled_id)
{
    /* B4, B1: slots finished before curfew_begin are reused (oldest first,
     * once more than 64 wait for reuse); the old handle then gives -ENOENT
     * instead of reaching the new blocker */
    enum { N = 200 };
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker h[N];
    for (int i = 0; i < N; i++) {
        CHECK_EQ(curfew_add_blocker(drain, "cycled", NULL, NULL, &h[i]), 0);
        CHECK(h[i].id != 0);
        CHECK_EQ(curfew_blocker_done(h[i]), 0);
    }
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            CHECK(h[i].id != h[j].id);

    curfew_blocker first = h[0];
    CHECK_EQ(curfew_blocker_done(first), -ENOENT);
    CHECK_EQ(curfew_blocker_fail(first, -EIO, NULL), -ENOENT);
    CHECK_EQ(curfew_remove_blocker(first), -ENOENT);
    CHECK_EQ(curfew_blocker_status(first, "stale"), -ENOENT);
    CHECK_EQ(curfew_blocker_describe(first, NULL, 0, NULL, 0), -ENOENT);
    CHECK_EQ(curfew_blocker_result(first, NULL), -ENOENT);

    /* The newest finished one is still known. */
    CHECK_EQ(curfew_blocker_result(h[N - 1], NULL), CURFEW_RESULT_OK);
    CHECK_EQ(curfew_blocker_done(h[N - 1]), -EALREADY);

    /* A live blocker is not disturbed by the stale handle. */
    curfew_blocker live = {0};
    CHECK_EQ(curfew_add_blocker(drain, "live", NULL, NULL, &live), 0);
    CHECK_EQ(curfew_blocker_done(first), -ENOENT);
    CHECK_EQ(curfew_blocker_result(live, NULL), CURFEW_RESULT_PENDING);

    curfew_stats st;
    CHECK_EQ(curfew_stats_get(cf, &st), 0);
    CHECK_EQ(st.blockers, N + 1);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_done(live), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- B5: failed adds ---------------------------------------------------- */

TEST(blocker_add_to_completed_barrier)
{
    /* B5: adding to a completed barrier gives -ESHUTDOWN and is remembered
     * with its call site */
    curfew *cf = mk(NULL);
    curfew_barrier *sa = phase(cf, "stop-accepting");
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker hold = {0}, late = {0}, ok = {0};
    CHECK_EQ(curfew_add_blocker(drain, "hold", NULL, NULL, &hold), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_barrier_state(sa), CURFEW_COMPLETE);

    int line = __LINE__ + 1;
    int rc = curfew_add_blocker(sa, "late", NULL, NULL, &late);
    CHECK_EQ(rc, -ESHUTDOWN);
    /* A barrier not yet started still takes blockers. */
    CHECK_EQ(curfew_add_blocker(phase(cf, "children"), "ok", t_done, NULL, &ok),
             0);

    curfew_broken_registration br[4];
    memset(br, 0, sizeof br);
    CHECK_EQ(curfew_broken_registrations(cf, br, 4), 1);
    CHECK_STR(br[0].name, "late");
    CHECK_EQ(br[0].error, -ESHUTDOWN);
    CHECK_STR(br[0].barrier, "stop-accepting");
    CHECK_STR(br[0].file, __FILE__);
    CHECK_EQ(br[0].line, line);
    CHECK_STR(br[0].func, __func__);

    CHECK_EQ(curfew_blocker_done(hold), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&g_calls), 1);
    CHECK_EQ(curfew_blocker_result(ok, NULL), CURFEW_RESULT_OK);

    /* After the whole shutdown, every phase refuses. */
    CHECK_EQ(
        curfew_add_blocker(phase(cf, "final"), "later", t_done, NULL, NULL),
        -ESHUTDOWN);
    CHECK_EQ(curfew_broken_registrations(cf, br, 4), 2);
    CHECK_STR(br[1].name, "later");
    CHECK_STR(br[1].barrier, "final");
    CHECK_EQ(br[1].error, -ESHUTDOWN);
    CHECK_EQ(atomic_load(&g_calls), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_add_null_barrier)
{
    /* B5: a NULL barrier is -EINVAL; with no coordinator nothing can be
     * remembered */
    curfew *cf = mk(NULL);
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(NULL, "x", NULL, NULL, &b), -EINVAL);
    CHECK_EQ(curfew_add_blocker(NULL, NULL, t_done, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_broken_registrations(cf, NULL, 0), 0);
    CHECK_EQ(curfew_broken_registrations(NULL, NULL, 0), -EINVAL);
    CHECK_EQ(atomic_load(&g_calls), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_add_bad_name_recorded)
{
    /* B5: NULL and empty names are -EINVAL and listed, oldest first, with
     * name ("(null)" for NULL), error, barrier and call site */
    curfew *cf = mk(NULL);
    curfew_barrier *persist = phase(cf, "persist");
    curfew_barrier *own = NULL;
    CHECK_EQ(curfew_barrier_create(cf, "service", NULL, &own), 0);

    int line1 = __LINE__ + 1;
    int rc1 = curfew_add_blocker(persist, NULL, t_done, NULL, NULL);
    int line2 = __LINE__ + 1;
    int rc2 = curfew_add_blocker(own, "", NULL, NULL, NULL);
    CHECK_EQ(rc1, -EINVAL);
    CHECK_EQ(rc2, -EINVAL);

    curfew_broken_registration br[3];
    memset(br, 0, sizeof br);
    br[1].line = -7; /* must stay untouched with max 1 */
    CHECK_EQ(curfew_broken_registrations(cf, NULL, 0), 2);
    CHECK_EQ(curfew_broken_registrations(cf, br, 1), 2);
    CHECK_STR(br[0].name, "(null)");
    CHECK_EQ(br[1].line, -7);

    CHECK_EQ(curfew_broken_registrations(cf, br, 3), 2);
    CHECK_STR(br[0].name, "(null)");
    CHECK_EQ(br[0].error, -EINVAL);
    CHECK_STR(br[0].barrier, "persist");
    CHECK_STR(br[0].file, __FILE__);
    CHECK_EQ(br[0].line, line1);
    CHECK_STR(br[0].func, __func__);
    CHECK_STR(br[1].name, "");
    CHECK_EQ(br[1].error, -EINVAL);
    CHECK_STR(br[1].barrier, "service");
    CHECK_STR(br[1].file, __FILE__);
    CHECK_EQ(br[1].line, line2);
    CHECK_STR(br[1].func, __func__);

    /* Nothing was added: the shutdown runs without them. */
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&g_calls), 0);
    /* Still listed after the shutdown. */
    CHECK_EQ(curfew_broken_registrations(cf, br, 3), 2);
    CHECK_STR(br[1].barrier, "service");
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- B6: remove --------------------------------------------------------- */

TEST(blocker_remove_from_thread)
{
    /* B6: removing from another thread stops the wait from waiting */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(drain, "gone", t_pending, NULL, &b), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");

    struct later l = {.b = b, .delay_ms = 30, .op = OP_REMOVE};
    later_start(&l);
    drive(cf, 10000);
    CHECK_EQ(later_join(&l), 0);

    int err;
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_REMOVED);
    CHECK_EQ(err, 0);
    CHECK_EQ(curfew_remove_blocker(b), -ENOENT);
    int rc = curfew_blocker_done(b);
    CHECK(rc == -EALREADY || rc == -ENOENT);
    CHECK_EQ(result_of(b, &err), CURFEW_RESULT_REMOVED);
    CHECK_EQ(atomic_load(&g_calls), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static struct {
    atomic_int calls;
    int rc;
} g6;

static int t_remove_self(curfew_blocker self, void *arg)
{
    (void)arg;
    atomic_fetch_add(&g6.calls, 1);
    g6.rc = curfew_remove_blocker(self);
    return CURFEW_PENDING;
}

TEST(blocker_remove_from_own_trigger)
{
    /* B6: a trigger may remove its own blocker; the others are still
     * waited for */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker self = {0}, other = {0};
    g6.rc = 99;
    CHECK_EQ(curfew_add_blocker(drain, "self", t_remove_self, NULL, &self), 0);
    CHECK_EQ(curfew_add_blocker(drain, "other", NULL, NULL, &other), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(atomic_load(&g6.calls), 1);
    CHECK_EQ(g6.rc, 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_blocker_result(self, NULL), CURFEW_RESULT_REMOVED);

    CHECK_EQ(curfew_blocker_done(other), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_blocker_result(self, NULL), CURFEW_RESULT_REMOVED);
    CHECK_EQ(curfew_blocker_result(other, NULL), CURFEW_RESULT_OK);
    CHECK_EQ(curfew_remove_blocker(self), -ENOENT);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_remove_alone_completes_phase)
{
    /* B6: removing the only pending blocker (from its trigger) lets the
     * phase complete */
    curfew *cf = mk(NULL);
    curfew_blocker self = {0};
    g6.rc = 99;
    CHECK_EQ(curfew_add_blocker(phase(cf, "persist"), "self", t_remove_self,
                                NULL, &self),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    drive(cf, 10000);
    CHECK_EQ(g6.rc, 0);
    CHECK_EQ(atomic_load(&g6.calls), 1);
    CHECK_EQ(curfew_blocker_result(self, NULL), CURFEW_RESULT_REMOVED);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_remove_finished)
{
    /* B6: a finished blocker cannot be removed: -ENOENT, result unchanged */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker ok = {0}, bad = {0}, pre = {0};
    CHECK_EQ(curfew_add_blocker(drain, "ok", NULL, NULL, &ok), 0);
    CHECK_EQ(curfew_add_blocker(drain, "bad", NULL, NULL, &bad), 0);
    CHECK_EQ(curfew_add_blocker(drain, "pre", NULL, NULL, &pre), 0);

    /* Removing before shutdown: it is not waited for. */
    CHECK_EQ(curfew_remove_blocker(pre), 0);
    CHECK_EQ(curfew_remove_blocker(pre), -ENOENT);
    CHECK_EQ(curfew_blocker_result(pre, NULL), CURFEW_RESULT_REMOVED);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_done(ok), 0);
    CHECK_EQ(curfew_remove_blocker(ok), -ENOENT);
    CHECK_EQ(curfew_blocker_fail(bad, -EPIPE, "pipe"), 0);
    CHECK_EQ(curfew_remove_blocker(bad), -ENOENT);
    CHECK_EQ(curfew_dispatch(cf), 1);

    int err;
    CHECK_EQ(result_of(ok, &err), CURFEW_RESULT_OK);
    CHECK_EQ(result_of(bad, &err), CURFEW_RESULT_ERROR);
    CHECK_EQ(err, -EPIPE);
    CHECK_EQ(curfew_remove_blocker(ok), -ENOENT);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- B7: status --------------------------------------------------------- */

static int vstatus_helper(curfew_blocker b, const char *fmt, ...)
    CURFEW__PRINTF(2, 3);

static int vstatus_helper(curfew_blocker b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = curfew_blocker_vstatus(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Called through pointers so no format check sees the NULL format. */
static const char *volatile g_null_fmt;
static int (*volatile g_status_fn)(curfew_blocker, const char *,
                                   ...) = curfew_blocker_status;

static int vstatus_unchecked(curfew_blocker b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = curfew_blocker_vstatus(b, fmt, ap);
    va_end(ap);
    return rc;
}

TEST(blocker_status_format)
{
    /* B7: printf-style status, read back with curfew_blocker_describe */
    curfew *cf = mk(NULL);
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(phase(cf, "drain"), "copier", NULL, NULL, &b),
             0);
    CHECK_EQ(curfew_blocker_status(b, "%s %d%% of %u files", "copying", 42, 7u),
             0);
    char name[64], status[CURFEW_STATUS_MAX + 64];
    CHECK_EQ(
        curfew_blocker_describe(b, name, sizeof name, status, sizeof status),
        0);
    CHECK_STR(name, "copier");
    CHECK_STR(status, "copying 42% of 7 files");

    /* Replaced, not appended. */
    CHECK_EQ(vstatus_helper(b, "phase %c, %.2f s", 'x', 1.5), 0);
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, status, sizeof status), 0);
    CHECK_STR(status, "phase x, 1.50 s");

    /* Small buffers are cut and NUL-terminated. */
    memset(name, 'Z', sizeof name);
    memset(status, 'Z', sizeof status);
    CHECK_EQ(curfew_blocker_describe(b, name, 4, status, 6), 0);
    CHECK_STR(name, "cop");
    CHECK_STR(status, "phase");
    CHECK_EQ(name[4], 'Z');
    CHECK_EQ(status[6], 'Z');

    /* NULL format. */
    CHECK_EQ(g_status_fn(b, g_null_fmt), -EINVAL);
    CHECK_EQ(vstatus_unchecked(b, g_null_fmt), -EINVAL);
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, status, sizeof status), 0);
    CHECK_STR(status, "phase x, 1.50 s");

    /* An empty status. */
    CHECK_EQ(curfew_blocker_status(b, "%s", ""), 0);
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, status, sizeof status), 0);
    CHECK_STR(status, "");

    /* The last status is kept after the blocker finished. */
    CHECK_EQ(curfew_blocker_status(b, "closing %d", 3), 0);
    CHECK_EQ(curfew_blocker_done(b), 0);
    CHECK_EQ(
        curfew_blocker_describe(b, name, sizeof name, status, sizeof status),
        1);
    CHECK_STR(name, "copier");
    CHECK_STR(status, "closing 3");
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(blocker_status_utf8_cut)
{
    /* B7: a status longer than CURFEW_STATUS_MAX bytes is cut to at most
     * that many bytes, on a UTF-8 boundary */
    CHECK_EQ(CURFEW_STATUS_MAX, 256);
    static const struct {
        int ascii;      /* leading 'a's */
        const char *ch; /* then this character, repeated */
        int reps;
        size_t want; /* expected length after the cut */
    } cases[] = {
        {255, "\xc3\xa9", 1, 255},         /* é over bytes 255-256 */
        {256, "\xc3\xa9", 1, 256},         /* é after byte 256 */
        {254, "\xe2\x82\xac", 1, 254},     /* € over bytes 254-256 */
        {255, "\xe2\x82\xac", 1, 255},     /* € over bytes 255-257 */
        {253, "\xf0\x9f\x98\x80", 1, 253}, /* emoji over 253-256 */
        {252, "\xf0\x9f\x98\x80", 2, 256}, /* emoji ends at 256 */
        {0, "\xc3\xa9", 200, 256},         /* 128 é fit exactly */
        {0, "\xe2\x82\xac", 100, 255},     /* 85 € fit */
        {0, "a", 256, 256},                /* exactly the limit */
        {0, "a", 1000, 256},
    };
    curfew *cf = mk(NULL);
    curfew_blocker b = {0};
    CHECK_EQ(curfew_add_blocker(phase(cf, "drain"), "u", NULL, NULL, &b), 0);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char in[2048];
        size_t n = 0;
        for (int i = 0; i < cases[c].ascii; i++)
            in[n++] = 'a';
        for (int i = 0; i < cases[c].reps; i++) {
            size_t k = strlen(cases[c].ch);
            memcpy(in + n, cases[c].ch, k);
            n += k;
        }
        memcpy(in + n, "tail", 5);
        CHECK(is_valid_utf8(in, strlen(in)));

        char out[1024];
        memset(out, 'Z', sizeof out);
        CHECK_EQ(curfew_blocker_status(b, "%s", in), 0);
        CHECK_EQ(curfew_blocker_describe(b, NULL, 0, out, sizeof out), 0);
        size_t len = strlen(out);
        if (len > CURFEW_STATUS_MAX || len != cases[c].want)
            th_fail(__FILE__, __LINE__,
                    "case %zu: status cut to %zu bytes, want %zu", c, len,
                    cases[c].want);
        CHECK(is_valid_utf8(out, len));
        CHECK(memcmp(out, in, len) == 0);
    }

    /* Short multi-byte texts are kept whole. */
    CHECK_EQ(curfew_blocker_status(b, "%s", "déjà vu € \xf0\x9f\x98\x80"), 0);
    char out[512];
    CHECK_EQ(curfew_blocker_describe(b, NULL, 0, out, sizeof out), 0);
    CHECK_STR(out, "déjà vu € \xf0\x9f\x98\x80");
    CHECK_EQ(curfew_blocker_done(b), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

#define STATUS_THREADS 8
#define STATUS_ITERS 2000
#define STATUS_FILL 200

static struct {
    curfew_blocker b;
    atomic_int finished;
    atomic_int bad_rc;
} g7;

static void *status_writer(void *p)
{
    int me = (int)(intptr_t)p;
    char fill[STATUS_FILL + 1];
    memset(fill, 'A' + me, STATUS_FILL);
    fill[STATUS_FILL] = '\0';
    for (int i = 0; i < STATUS_ITERS; i++)
        if (curfew_blocker_status(g7.b, "t%d i%05d %s", me, i, fill) != 0)
            atomic_fetch_add(&g7.bad_rc, 1);
    atomic_fetch_add(&g7.finished, 1);
    return NULL;
}

/* A status read back must be one whole text written by one thread. */
static void check_status_text(const char *s, int *t_out, int *i_out)
{
    int t = -1, i = -1, off = 0;
    if (sscanf(s, "t%d i%d %n", &t, &i, &off) != 2 || off == 0)
        th_fail(__FILE__, __LINE__, "torn status: \"%s\"", s);
    CHECK(t >= 0 && t < STATUS_THREADS);
    CHECK(i >= 0 && i < STATUS_ITERS);
    CHECK_EQ(strlen(s + off), STATUS_FILL);
    for (int k = 0; k < STATUS_FILL; k++)
        if (s[off + k] != 'A' + t)
            th_fail(__FILE__, __LINE__, "torn status: \"%s\"", s);
    *t_out = t;
    *i_out = i;
}

TEST(blocker_status_many_threads)
{
    /* B7: status from many threads at once while the shutdown runs; every
     * read sees one whole status (ThreadSanitizer checks the rest) */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    CHECK_EQ(curfew_add_blocker(drain, "busy", NULL, NULL, &g7.b), 0);
    struct runner r;
    runner_start(&r, cf);
    CHECK_EQ(curfew_begin(cf), 0);

    pthread_t th[STATUS_THREADS];
    for (int i = 0; i < STATUS_THREADS; i++)
        CHECK_EQ(
            pthread_create(&th[i], NULL, status_writer, (void *)(intptr_t)i),
            0);
    char buf[CURFEW_STATUS_MAX + 1];
    while (atomic_load(&g7.finished) < STATUS_THREADS) {
        CHECK_EQ(curfew_blocker_describe(g7.b, NULL, 0, buf, sizeof buf), 0);
        if (buf[0]) {
            int t, i;
            check_status_text(buf, &t, &i);
        }
    }
    for (int i = 0; i < STATUS_THREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    CHECK_EQ(atomic_load(&g7.bad_rc), 0);

    /* The last status is some thread's last. */
    CHECK_EQ(curfew_blocker_describe(g7.b, NULL, 0, buf, sizeof buf), 0);
    int t, i;
    check_status_text(buf, &t, &i);
    CHECK_EQ(i, STATUS_ITERS - 1);

    CHECK_EQ(curfew_blocker_done(g7.b), 0);
    CHECK_EQ(runner_wait(&r, 10000), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- B8: parallel blockers ---------------------------------------------- */

TEST(blocker_empty_phases_complete_at_once)
{
    /* B8, D1: phases without blockers complete at once: one dispatch after
     * begin runs the whole shutdown */
    struct rec r;
    curfew *cf = mk(&r);
    unsigned n = curfew_phase_count(cf);
    CHECK_EQ(n, 7);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK(curfew_current_phase(cf) == NULL);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK(th_now_ms() - t0 < 1000);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_STR(curfew_current_phase(cf), "final");
    CHECK_EQ(curfew_dispatch(cf), 1);
    for (unsigned i = 0; i < n; i++)
        CHECK_EQ(curfew_barrier_state(phase(cf, curfew_phase_name(cf, i))),
                 CURFEW_COMPLETE);

    CHECK_EQ(rec_count(&r, CURFEW_EV_BEGIN), 1);
    CHECK_EQ(rec_count(&r, CURFEW_EV_PHASE_BEGIN), 7);
    CHECK_EQ(rec_count(&r, CURFEW_EV_PHASE_END), 7);
    CHECK_EQ(rec_count(&r, CURFEW_EV_COMPLETE), 1);
    /* The phases began in order. */
    unsigned k = 0;
    for (int i = 0; i < r.n; i++)
        if (r.ev[i].type == CURFEW_EV_PHASE_BEGIN)
            CHECK_STR(r.ev[i].phase, curfew_phase_name(cf, k++));
    CHECK_EQ(k, 7);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&r.mu);
}

#define PAR 8

static struct {
    struct later l[PAR];
    atomic_int started;
    int64_t trigger_ms[PAR];
} g8;

/* Each blocker's thread waits until every trigger ran (blockers of one
 * barrier are all pending at once: they meet however late a loaded
 * machine runs each step; triggered one after another they could not),
 * then takes its own time. */
static int t_sleeper(curfew_blocker self, void *arg)
{
    int i = (int)(intptr_t)arg;
    g8.trigger_ms[i] = th_now_ms();
    g8.l[i].b = self;
    g8.l[i].delay_ms = 50 * (i + 1); /* 50..400 ms, 1800 ms in all */
    g8.l[i].op = OP_DONE;
    g8.l[i].rc = 99;
    g8.l[i].meet = &g8.started;
    g8.l[i].meet_want = PAR;
    atomic_fetch_add(&g8.started, 1);
    later_start(&g8.l[i]);
    return CURFEW_PENDING;
}

TEST(blocker_parallel_not_sum)
{
    /* B8: a barrier takes as long as its slowest blocker, not the sum:
     * not the 1800 ms of their delays, nor (on a loaded machine, where
     * each takes longer) the sum of the times they actually took */
    struct rec r;
    curfew *cf = mk(&r);
    curfew_barrier *drain = phase(cf, "drain");
    curfew_blocker h[PAR];
    for (int i = 0; i < PAR; i++)
        CHECK_EQ(curfew_add_blocker(drain, "sleeper", t_sleeper,
                                    (void *)(intptr_t)i, &h[i]),
                 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_begin(cf), 0);
    drive(cf, 10000);
    int64_t took = th_now_ms() - t0;
    CHECK_EQ(atomic_load(&g8.started), PAR);
    for (int i = 0; i < PAR; i++) {
        CHECK_EQ(later_join(&g8.l[i]), 0);
        CHECK_EQ(curfew_blocker_result(h[i], NULL), CURFEW_RESULT_OK);
    }
    /* Every trigger ran before the first blocker finished. */
    int64_t last_trigger = 0, first_done = INT64_MAX, sum = 0;
    for (int i = 0; i < PAR; i++) {
        if (g8.trigger_ms[i] > last_trigger)
            last_trigger = g8.trigger_ms[i];
        if (g8.l[i].done_ms < first_done)
            first_done = g8.l[i].done_ms;
        sum += g8.l[i].done_ms - g8.trigger_ms[i];
    }
    CHECK(last_trigger <= first_done);
    /* sum >= 1800: one after another, the shutdown would take at least
     * that long. */
    if (took < 395 || took >= sum)
        th_fail(__FILE__, __LINE__,
                "shutdown took %" PRId64 " ms: want >= 400 (slowest) and "
                "< %" PRId64 " (the times the blockers took, in all; their "
                "delays: 1800)",
                took, sum);
    const struct rec_ev *e = NULL;
    for (int i = 0; i < r.n; i++)
        if (r.ev[i].type == CURFEW_EV_PHASE_END &&
            strcmp(r.ev[i].phase, "drain") == 0)
            e = &r.ev[i];
    CHECK(e != NULL);
    CHECK(e->duration_ms >= 390 && e->duration_ms < sum);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&r.mu);
}

/* ---- D3: many completions ----------------------------------------------- */

#define MANY 100000
#define MANY_THREADS 4

static struct {
    curfew_blocker *h;
    atomic_int triggered;
    atomic_int bad_rc;
} g3;

static int t_many(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    atomic_fetch_add(&g3.triggered, 1);
    return CURFEW_PENDING;
}

static void *many_finisher(void *p)
{
    int me = (int)(intptr_t)p;
    for (int i = me; i < MANY; i += MANY_THREADS)
        if (curfew_blocker_done(g3.h[i]) != 0)
            atomic_fetch_add(&g3.bad_rc, 1);
    return NULL;
}

TEST(blocker_100k_done_coalesced)
{
    /* D3, B2, B4: 100 000 blockers of one phase finished from 4 threads
     * while curfew_run dispatches: none is lost and the wake-ups are
     * coalesced */
    curfew *cf = mk(NULL);
    curfew_barrier *drain = phase(cf, "drain");
    g3.h = calloc(MANY, sizeof *g3.h);
    CHECK(g3.h != NULL);
    /* Half with a PENDING trigger, half with none. */
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(curfew_add_blocker(drain, "many", (i & 1) ? t_many : NULL,
                                    NULL, &g3.h[i]),
                 0);
    curfew_stats st;
    CHECK_EQ(curfew_stats_get(cf, &st), 0);
    CHECK_EQ(st.blockers, MANY);

    struct runner r;
    runner_start(&r, cf);
    CHECK_EQ(curfew_begin(cf), 0);
    wait_flag(&g3.triggered, MANY / 2, 30000);
    CHECK_EQ(atomic_load(&r.finished), 0);

    pthread_t th[MANY_THREADS];
    for (int i = 0; i < MANY_THREADS; i++)
        CHECK_EQ(
            pthread_create(&th[i], NULL, many_finisher, (void *)(intptr_t)i),
            0);
    for (int i = 0; i < MANY_THREADS; i++)
        CHECK_EQ(pthread_join(th[i], NULL), 0);
    CHECK_EQ(runner_wait(&r, 30000), 0);
    CHECK_EQ(atomic_load(&g3.bad_rc), 0);
    CHECK_EQ(atomic_load(&g3.triggered), MANY / 2);
    CHECK_EQ(curfew_is_complete(cf), 1);

    for (int i = 0; i < MANY; i++) {
        int err = 1;
        int res = curfew_blocker_result(g3.h[i], &err);
        if (res != CURFEW_RESULT_OK || err != 0)
            th_fail(__FILE__, __LINE__, "blocker %d: result %d, err %d", i, res,
                    err);
    }
    CHECK_EQ(curfew_stats_get(cf, &st), 0);
    if (st.wakeups >= 1000)
        th_fail(__FILE__, __LINE__,
                "%" PRIu64 " wake-ups for %d completions (want < 1000)",
                st.wakeups, MANY);
    CHECK_EQ(st.blockers, MANY);
    free(g3.h);
    CHECK_EQ(curfew_destroy(cf), 0);
}
