/* Tests for nested barriers: CONTRACT.md N1-N3.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core_util.h"
#include "harness.h"

#include <curfew/core.h>

#include <errno.h>
#include <poll.h>

/* ---- helpers ------------------------------------------------------------ */

/* A blocker whose trigger records that it ran and returns PENDING. */
struct probe {
    int triggered;
    curfew_blocker self;
};

static int probe_trigger(curfew_blocker self, void *arg)
{
    struct probe *p = arg;
    p->triggered++;
    p->self = self;
    return CURFEW_PENDING;
}

static curfew *make_two_phase(void)
{
    static const curfew_phase_config ph[] = {{.name = "one"}, {.name = "two"}};
    curfew_config cfg = {.phases = ph, .phase_count = 2};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    return cf;
}

static curfew_barrier *mk(curfew *cf, const char *name)
{
    curfew_barrier *b = NULL;
    CHECK_EQ(curfew_barrier_create(cf, name, NULL, &b), 0);
    CHECK(b != NULL);
    return b;
}

/* ---- N1: creation and nesting ------------------------------------------- */

TEST(barrier_create_invalid)
{
    /* N1: curfew_barrier_create argument checks; a fresh barrier has its
     * name and has not started (N3). */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *b = NULL;
    CHECK_EQ(curfew_barrier_create(NULL, "x", NULL, &b), -EINVAL);
    CHECK_EQ(curfew_barrier_create(cf, "x", NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_barrier_create(cf, NULL, NULL, &b), -EINVAL);
    CHECK_EQ(curfew_barrier_create(cf, "", NULL, &b), -EINVAL);
    curfew_barrier_config bad = {.warn_after_ms = -5};
    CHECK_EQ(curfew_barrier_create(cf, "x", &bad, &b), -EINVAL);
    bad.warn_after_ms = 0;
    bad.crash_after_ms = -2;
    CHECK_EQ(curfew_barrier_create(cf, "x", &bad, &b), -EINVAL);

    char name[16] = "service";
    CHECK_EQ(curfew_barrier_create(cf, name, NULL, &b), 0);
    strcpy(name, "changed");
    CHECK_STR(curfew_barrier_name(b), "service");
    CHECK_EQ(curfew_barrier_state(b), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_nested_trigger_timing)
{
    /* N1, N3: a nested barrier's blockers are triggered when the phase it
     * waits in starts waiting, not before; the phase completes when the
     * nested barrier's last blocker finishes. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_blocker h0 = {0};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "held",
                                NULL, NULL, &h0),
             0);
    curfew_barrier *svc = mk(cf, "svc");
    struct probe pr = {0};
    CHECK_EQ(curfew_add_blocker(svc, "svc-work", probe_trigger, &pr, NULL), 0);
    curfew_barrier *drain = curfew_phase(cf, "drain");
    CHECK_EQ(curfew_barrier_wait_in(svc, drain, "svc"), 0);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_NOT_STARTED);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    /* stop-accepting waits; drain and svc have not started. */
    CHECK_EQ(curfew_barrier_state(curfew_phase(cf, "stop-accepting")),
             CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_NOT_STARTED);
    CHECK_EQ(pr.triggered, 0);

    CHECK_EQ(curfew_blocker_done(h0), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_WAITING);
    CHECK_EQ(pr.triggered, 1);
    /* More dispatches: still waiting, no second trigger. */
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(pr.triggered, 1);
    CHECK_EQ(curfew_in_or_beyond(cf, "children"), 0);

    CHECK_EQ(curfew_blocker_done(pr.self), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_COMPLETE);
    CHECK_EQ(pr.triggered, 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_nested_last_blocker)
{
    /* N1: the outer phase completes only after the inner barrier's last
     * blocker finished, whatever the phase's own blockers do. */
    curfew *cf = make_two_phase();
    curfew_barrier *one = curfew_phase(cf, "one");
    curfew_barrier *inner = mk(cf, "inner");
    curfew_blocker i1 = {0}, i2 = {0}, own = {0};
    CHECK_EQ(curfew_add_blocker(inner, "i1", NULL, NULL, &i1), 0);
    CHECK_EQ(curfew_add_blocker(inner, "i2", NULL, NULL, &i2), 0);
    CHECK_EQ(curfew_add_blocker(one, "own", NULL, NULL, &own), 0);
    CHECK_EQ(curfew_barrier_wait_in(inner, one, "inner-wait"), 0);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_WAITING);

    CHECK_EQ(curfew_blocker_done(own), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_WAITING);

    CHECK_EQ(curfew_blocker_done(i1), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_WAITING);
    CHECK_EQ(curfew_in_or_beyond(cf, "two"), 0);

    CHECK_EQ(curfew_blocker_done(i2), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(curfew_phase(cf, "two")), CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_nested_empty)
{
    /* N1, B8: an inner barrier with no blockers completes as soon as it
     * starts waiting, and lets its phase complete. */
    curfew *cf = make_two_phase();
    curfew_barrier *inner = mk(cf, "empty");
    CHECK_EQ(curfew_barrier_wait_in(inner, curfew_phase(cf, "two"), "empty"),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_two_levels)
{
    /* N1, N3: inner waits in mid, mid waits in the phase. Both start with
     * the phase; mid completes only after inner; the phase after mid. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_blocker h0 = {0};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "held",
                                NULL, NULL, &h0),
             0);
    curfew_barrier *drain = curfew_phase(cf, "drain");
    curfew_barrier *mid = mk(cf, "mid");
    curfew_barrier *inner = mk(cf, "inner");
    struct probe pm = {0}, pi = {0};
    CHECK_EQ(curfew_add_blocker(mid, "mid-work", probe_trigger, &pm, NULL), 0);
    CHECK_EQ(curfew_add_blocker(inner, "inner-work", probe_trigger, &pi, NULL),
             0);
    /* Nest inner first, then hang mid into the phase. */
    CHECK_EQ(curfew_barrier_wait_in(inner, mid, "inner"), 0);
    CHECK_EQ(curfew_barrier_wait_in(mid, drain, "mid"), 0);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(pm.triggered, 0);
    CHECK_EQ(pi.triggered, 0);
    CHECK_EQ(curfew_barrier_state(mid), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_NOT_STARTED);

    CHECK_EQ(curfew_blocker_done(h0), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(pm.triggered, 1);
    CHECK_EQ(pi.triggered, 1);
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(mid), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_WAITING);

    /* mid's own blocker finishes: mid still waits for inner. */
    CHECK_EQ(curfew_blocker_done(pm.self), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(mid), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_WAITING);
    CHECK_EQ(curfew_in_or_beyond(cf, "children"), 0);

    CHECK_EQ(curfew_blocker_done(pi.self), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(inner), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(mid), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(drain), CURFEW_COMPLETE);
    CHECK_EQ(pm.triggered, 1);
    CHECK_EQ(pi.triggered, 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_while_waiting)
{
    /* N1, B2: a barrier hung into a phase that is already waiting starts
     * waiting (and triggers its blockers) on the next dispatch, and the
     * phase then waits for it too. */
    curfew *cf = make_two_phase();
    curfew_barrier *one = curfew_phase(cf, "one");
    curfew_blocker held = {0};
    CHECK_EQ(curfew_add_blocker(one, "held", NULL, NULL, &held), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_WAITING);

    curfew_barrier *late = mk(cf, "late");
    struct probe pr = {0};
    CHECK_EQ(curfew_add_blocker(late, "late-work", probe_trigger, &pr, NULL),
             0);
    CHECK_EQ(curfew_barrier_wait_in(late, one, "late"), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(pr.triggered, 1);
    CHECK_EQ(curfew_barrier_state(late), CURFEW_WAITING);

    CHECK_EQ(curfew_blocker_done(held), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_WAITING);
    CHECK_EQ(curfew_in_or_beyond(cf, "two"), 0);

    CHECK_EQ(curfew_blocker_done(pr.self), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(late), CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_invalid)
{
    /* N1: -EINVAL for NULL arguments, an empty name, the same barrier
     * twice, and a phase as the inner barrier. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *a = mk(cf, "a");
    curfew_barrier *b = mk(cf, "b");
    curfew_barrier *drain = curfew_phase(cf, "drain");
    curfew_barrier *persist = curfew_phase(cf, "persist");

    CHECK_EQ(curfew_barrier_wait_in(NULL, drain, "x"), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(a, NULL, "x"), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(a, drain, NULL), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(a, drain, ""), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(a, a, "self"), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(drain, drain, "self"), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(drain, persist, "phase"), -EINVAL);
    CHECK_EQ(curfew_barrier_wait_in(drain, a, "phase"), -EINVAL);

    /* None of the refused calls hung anything in: both still nest. */
    CHECK_EQ(curfew_barrier_wait_in(a, drain, "a"), 0);
    CHECK_EQ(curfew_barrier_wait_in(b, a, "b"), 0);
    CHECK_EQ(curfew_barrier_state(NULL), -EINVAL);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_loop2)
{
    /* N1: A in B, then B in A would be a cycle: -ELOOP. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *a = mk(cf, "A");
    curfew_barrier *b = mk(cf, "B");
    curfew_barrier *c = mk(cf, "C");
    CHECK_EQ(curfew_barrier_wait_in(a, b, "A"), 0);
    CHECK_EQ(curfew_barrier_wait_in(b, a, "B"), -ELOOP);
    /* The refused call left B free: it can wait elsewhere. */
    CHECK_EQ(curfew_barrier_wait_in(b, c, "B"), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_loop3)
{
    /* N1: A in B, B in C, then C in A would be a cycle: -ELOOP. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *a = mk(cf, "A");
    curfew_barrier *b = mk(cf, "B");
    curfew_barrier *c = mk(cf, "C");
    CHECK_EQ(curfew_barrier_wait_in(a, b, "A"), 0);
    CHECK_EQ(curfew_barrier_wait_in(b, c, "B"), 0);
    CHECK_EQ(curfew_barrier_wait_in(c, a, "C"), -ELOOP);
    CHECK_EQ(curfew_barrier_wait_in(c, b, "C"), -ELOOP);
    /* C may still wait in a phase: the chain then runs in drain. */
    curfew_blocker ba = {0};
    CHECK_EQ(curfew_add_blocker(a, "a-work", NULL, NULL, &ba), 0);
    CHECK_EQ(curfew_barrier_wait_in(c, curfew_phase(cf, "drain"), "C"), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_barrier_state(a), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(c), CURFEW_WAITING);
    CHECK_EQ(curfew_blocker_done(ba), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(c), CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_already)
{
    /* N1: an inner barrier waits in at most one outer barrier. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *a = mk(cf, "A");
    curfew_barrier *b = mk(cf, "B");
    curfew_barrier *c = mk(cf, "C");
    CHECK_EQ(curfew_barrier_wait_in(a, b, "A"), 0);
    CHECK_EQ(curfew_barrier_wait_in(a, c, "A"), -EALREADY);
    CHECK_EQ(curfew_barrier_wait_in(a, b, "A-again"), -EALREADY);
    CHECK_EQ(curfew_barrier_wait_in(a, curfew_phase(cf, "drain"), "A"),
             -EALREADY);

    curfew_barrier *d = mk(cf, "D");
    CHECK_EQ(curfew_barrier_wait_in(d, curfew_phase(cf, "drain"), "D"), 0);
    CHECK_EQ(curfew_barrier_wait_in(d, curfew_phase(cf, "persist"), "D"),
             -EALREADY);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_loop_before_already)
{
    /* N1: -ELOOP is checked before -EALREADY. B waits in C and A waits in
     * B; hanging B into A is both a second outer for B and a cycle. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *a = mk(cf, "A");
    curfew_barrier *b = mk(cf, "B");
    curfew_barrier *c = mk(cf, "C");
    CHECK_EQ(curfew_barrier_wait_in(b, c, "B"), 0);
    CHECK_EQ(curfew_barrier_wait_in(a, b, "A"), 0);
    CHECK_EQ(curfew_barrier_wait_in(b, a, "B-in-A"), -ELOOP);
    /* Also with the cycle through a longer chain: C in A. */
    CHECK_EQ(curfew_barrier_wait_in(c, a, "C-in-A"), -ELOOP);
    /* And without a cycle, the second outer is refused as such. */
    curfew_barrier *d = mk(cf, "D");
    CHECK_EQ(curfew_barrier_wait_in(b, d, "B-in-D"), -EALREADY);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_wait_in_shutdown)
{
    /* N1: -ESHUTDOWN when the outer barrier has completed: a completed
     * phase, and a completed nested barrier. */
    curfew *cf = make_two_phase();
    curfew_barrier *one = curfew_phase(cf, "one");
    curfew_barrier *two = curfew_phase(cf, "two");
    curfew_barrier *quick = mk(cf, "quick");
    CHECK_EQ(curfew_barrier_wait_in(quick, one, "quick"), 0);
    curfew_blocker held = {0};
    CHECK_EQ(curfew_add_blocker(two, "held", NULL, NULL, &held), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(quick), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_WAITING);

    curfew_barrier *x = mk(cf, "x");
    CHECK_EQ(curfew_barrier_wait_in(x, one, "x"), -ESHUTDOWN);
    CHECK_EQ(curfew_barrier_wait_in(x, quick, "x"), -ESHUTDOWN);
    /* Refused, so x is still free and can wait in the running phase. */
    curfew_blocker xb = {0};
    CHECK_EQ(curfew_add_blocker(x, "x-work", NULL, NULL, &xb), 0);
    CHECK_EQ(curfew_barrier_wait_in(x, two, "x"), 0);
    CHECK_EQ(curfew_blocker_done(held), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_WAITING);
    CHECK_EQ(curfew_blocker_done(xb), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_wait_in(mk(cf, "y"), two, "y"), -ESHUTDOWN);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- N2: per-barrier timeouts ------------------------------------------- */

static void check_timeouts(const curfew_barrier *b, int32_t warn, int32_t crash)
{
    int32_t w = 12345, c = 12345;
    CHECK_EQ(curfew_barrier_timeouts(b, &w, &c), 0);
    CHECK_EQ(w, warn);
    CHECK_EQ(c, crash);
}

TEST(barrier_timeouts_defaults)
{
    /* N2, C1: with a default coordinator: NULL bcfg and 0 fields take
     * 10000 / 60000; CURFEW_NEVER stays off; explicit values are kept. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *b = NULL;
    CHECK_EQ(curfew_barrier_create(cf, "null-cfg", NULL, &b), 0);
    check_timeouts(b, 10000, 60000);

    curfew_barrier_config zero = {0};
    CHECK_EQ(curfew_barrier_create(cf, "zero", &zero, &b), 0);
    check_timeouts(b, 10000, 60000);

    curfew_barrier_config never = {.warn_after_ms = CURFEW_NEVER,
                                   .crash_after_ms = CURFEW_NEVER};
    CHECK_EQ(curfew_barrier_create(cf, "never", &never, &b), 0);
    check_timeouts(b, CURFEW_NEVER, CURFEW_NEVER);

    curfew_barrier_config mixed = {.warn_after_ms = 1234, .crash_after_ms = 0};
    CHECK_EQ(curfew_barrier_create(cf, "mixed", &mixed, &b), 0);
    check_timeouts(b, 1234, 60000);

    curfew_barrier_config mixed2 = {.warn_after_ms = CURFEW_NEVER,
                                    .crash_after_ms = 777};
    CHECK_EQ(curfew_barrier_create(cf, "mixed2", &mixed2, &b), 0);
    check_timeouts(b, CURFEW_NEVER, 777);

    /* Phase barriers of a default coordinator. */
    check_timeouts(curfew_phase(cf, "drain"), 10000, 60000);
    check_timeouts(curfew_phase(cf, "final"), 10000, 60000);

    int32_t w, c;
    CHECK_EQ(curfew_barrier_timeouts(NULL, &w, &c), -EINVAL);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_timeouts_from_cfg)
{
    /* N2, C1: the coordinator's cfg values are the defaults of every
     * barrier; CURFEW_NEVER in cfg turns them off for all. */
    curfew_config cfg = {.warn_after_ms = 2000, .crash_after_ms = 3000};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_barrier *b = NULL;
    CHECK_EQ(curfew_barrier_create(cf, "null-cfg", NULL, &b), 0);
    check_timeouts(b, 2000, 3000);
    curfew_barrier_config zero = {0};
    CHECK_EQ(curfew_barrier_create(cf, "zero", &zero, &b), 0);
    check_timeouts(b, 2000, 3000);
    curfew_barrier_config own = {.warn_after_ms = 50, .crash_after_ms = 0};
    CHECK_EQ(curfew_barrier_create(cf, "own", &own, &b), 0);
    check_timeouts(b, 50, 3000);
    check_timeouts(curfew_phase(cf, "persist"), 2000, 3000);
    CHECK_EQ(curfew_destroy(cf), 0);

    curfew_config off = {.warn_after_ms = CURFEW_NEVER,
                         .crash_after_ms = CURFEW_NEVER};
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &off), 0);
    CHECK_EQ(curfew_barrier_create(cf, "null-cfg", NULL, &b), 0);
    check_timeouts(b, CURFEW_NEVER, CURFEW_NEVER);
    curfew_barrier_config on = {.warn_after_ms = 10, .crash_after_ms = 20};
    CHECK_EQ(curfew_barrier_create(cf, "on", &on, &b), 0);
    check_timeouts(b, 10, 20);
    check_timeouts(curfew_phase(cf, "drain"), CURFEW_NEVER, CURFEW_NEVER);
    CHECK_EQ(curfew_destroy(cf), 0);

    /* C1: a negative timeout other than CURFEW_NEVER is refused. */
    curfew_config bad = {.warn_after_ms = -7};
    CHECK_EQ(curfew_create(&cf, &bad), -EINVAL);
    curfew_config bad2 = {.crash_after_ms = -2};
    CHECK_EQ(curfew_create(&cf, &bad2), -EINVAL);
}

TEST(barrier_timeouts_phase)
{
    /* N2, C1: phase config values apply to the phase barriers; 0 there
     * takes the coordinator's value. */
    curfew_phase_config ph[] = {
        {.name = "a", .warn_after_ms = 100, .crash_after_ms = 200},
        {.name = "b"},
        {.name = "c",
         .warn_after_ms = CURFEW_NEVER,
         .crash_after_ms = CURFEW_NEVER},
        {.name = "d", .warn_after_ms = 0, .crash_after_ms = 4000}};
    curfew_config cfg = {.phases = ph,
                         .phase_count = 4,
                         .warn_after_ms = 1500,
                         .crash_after_ms = 2500};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    check_timeouts(curfew_phase(cf, "a"), 100, 200);
    check_timeouts(curfew_phase(cf, "b"), 1500, 2500);
    check_timeouts(curfew_phase(cf, "c"), CURFEW_NEVER, CURFEW_NEVER);
    check_timeouts(curfew_phase(cf, "d"), 1500, 4000);
    CHECK_EQ(curfew_destroy(cf), 0);

    /* With a default coordinator, 0 in a phase means 10000 / 60000. */
    curfew_phase_config ph2[] = {{.name = "x", .crash_after_ms = 90000},
                                 {.name = "y"}};
    curfew_config cfg2 = {.phases = ph2, .phase_count = 2};
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg2), 0);
    check_timeouts(curfew_phase(cf, "x"), 10000, 90000);
    check_timeouts(curfew_phase(cf, "y"), 10000, 60000);
    CHECK_EQ(curfew_destroy(cf), 0);

    /* A bad phase timeout is refused. */
    curfew_phase_config ph3[] = {{.name = "x", .warn_after_ms = -3}};
    curfew_config cfg3 = {.phases = ph3, .phase_count = 1};
    CHECK_EQ(curfew_create(&cf, &cfg3), -EINVAL);
}

/* ---- N3: barrier state -------------------------------------------------- */

TEST(barrier_state_phase)
{
    /* N3: a phase barrier is NOT_STARTED before, WAITING while a blocker
     * is pending, COMPLETE after; a failed blocker also finishes it (B3).
     */
    curfew *cf = make_two_phase();
    curfew_barrier *one = curfew_phase(cf, "one");
    curfew_barrier *two = curfew_phase(cf, "two");
    curfew_blocker b1 = {0}, b2 = {0};
    CHECK_EQ(curfew_add_blocker(one, "b1", NULL, NULL, &b1), 0);
    CHECK_EQ(curfew_add_blocker(two, "b2", NULL, NULL, &b2), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_blocker_fail(b1, -EIO, "broken"), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_WAITING);
    CHECK_EQ(curfew_blocker_done(b2), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(one), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_COMPLETE);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(barrier_state_nested)
{
    /* N3: a nested barrier's state follows its own wait: NOT_STARTED until
     * its outer barrier starts, WAITING while its blocker is pending (even
     * though the outer's other blocker finished), then COMPLETE. A barrier
     * that waits nowhere never starts. */
    curfew *cf = make_two_phase();
    curfew_barrier *two = curfew_phase(cf, "two");
    curfew_barrier *svc = mk(cf, "svc");
    curfew_barrier *lonely = mk(cf, "lonely");
    curfew_blocker sb = {0}, other = {0}, hold1 = {0};
    CHECK_EQ(curfew_add_blocker(svc, "svc-work", NULL, NULL, &sb), 0);
    CHECK_EQ(curfew_add_blocker(two, "other", NULL, NULL, &other), 0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "one"), "hold", NULL, NULL, &hold1),
        0);
    CHECK_EQ(curfew_add_blocker(lonely, "never", NULL, NULL, NULL), 0);
    CHECK_EQ(curfew_barrier_wait_in(svc, two, "svc"), 0);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_NOT_STARTED);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_blocker_done(hold1), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_WAITING);
    CHECK_EQ(curfew_blocker_done(other), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_WAITING);
    CHECK_EQ(curfew_blocker_done(sb), 0);
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_EQ(curfew_barrier_state(svc), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(two), CURFEW_COMPLETE);
    CHECK_EQ(curfew_barrier_state(lonely), CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_destroy(cf), 0);
}
