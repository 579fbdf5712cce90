/* Tests for the coordinator and its phases: CONTRACT.md C1-C6.
 *
 * SPDX-License-Identifier: MIT
 */
#include "core_util.h"
#include "harness.h"

#include <curfew/core.h>

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPHASES 7

static const char *const default_names[NPHASES] = {
    "stop-accepting", "drain",   "children", "persist",
    "telemetry",      "threads", "final"};

/* ---- helpers ------------------------------------------------------------ */

static int phase_index(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < NPHASES; i++)
        if (strcmp(name, default_names[i]) == 0)
            return i;
    return -2;
}

static int pending_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_PENDING;
}

/* ---- C1: creation, phase lists, destroy --------------------------------- */

static void check_default_phases(curfew *cf)
{
    CHECK_EQ(curfew_phase_count(cf), NPHASES);
    for (unsigned i = 0; i < NPHASES; i++)
        CHECK_STR(curfew_phase_name(cf, i), default_names[i]);
    CHECK(curfew_phase_name(cf, NPHASES) == NULL);
    CHECK(curfew_phase_name(cf, 1000) == NULL);
}

TEST(phase_default_list)
{
    /* C1: cfg == NULL, a zero config and a config with phases but
     * phase_count 0 all give the seven default phases, in order. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK(cf != NULL);
    check_default_phases(cf);
    CHECK_EQ(curfew_destroy(cf), 0);

    curfew_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    check_default_phases(cf);
    CHECK_EQ(curfew_destroy(cf), 0);

    curfew_phase_config one[] = {{.name = "only"}};
    cfg.phases = one;
    cfg.phase_count = 0;
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    check_default_phases(cf);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(phase_custom_list)
{
    /* C1: a custom list is kept in order; its names are copied. */
    char n0[16] = "alpha", n1[16] = "beta", n2[16] = "gamma";
    curfew_phase_config ph[] = {{.name = n0}, {.name = n1}, {.name = n2}};
    curfew_config cfg = {.phases = ph, .phase_count = 3};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    strcpy(n0, "XXXX");
    strcpy(n1, "YYYY");
    strcpy(n2, "ZZZZ");
    CHECK_EQ(curfew_phase_count(cf), 3);
    CHECK_STR(curfew_phase_name(cf, 0), "alpha");
    CHECK_STR(curfew_phase_name(cf, 1), "beta");
    CHECK_STR(curfew_phase_name(cf, 2), "gamma");
    CHECK(curfew_phase_name(cf, 3) == NULL);
    /* C2: the default names are not phases of this coordinator. */
    CHECK(curfew_phase(cf, "drain") == NULL);
    CHECK(curfew_phase(cf, "XXXX") == NULL);
    CHECK(curfew_phase(cf, "beta") != NULL);

    /* The custom phases run in that order. */
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "alpha");
    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    CHECK_STR(curfew_current_phase(cf), "gamma");
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(phase_invalid_names)
{
    /* C1: duplicate, empty or missing phase names are refused. */
    curfew *cf = NULL;
    curfew_phase_config dup[] = {{.name = "a"}, {.name = "b"}, {.name = "a"}};
    curfew_config cfg = {.phases = dup, .phase_count = 3};
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);

    curfew_phase_config empty[] = {{.name = "a"}, {.name = ""}};
    cfg.phases = empty;
    cfg.phase_count = 2;
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);

    curfew_phase_config null_name[] = {{.name = "a"}, {.name = NULL}};
    cfg.phases = null_name;
    cfg.phase_count = 2;
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);

    /* Duplicates of default names in a custom list, too. */
    curfew_phase_config dup2[] = {{.name = "drain"}, {.name = "drain"}};
    cfg.phases = dup2;
    cfg.phase_count = 2;
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);

    /* NULL out. */
    CHECK_EQ(curfew_create(NULL, NULL), -EINVAL);

    /* The same names without the duplicate work. */
    curfew_phase_config ok[] = {{.name = "a"}, {.name = "b"}};
    cfg.phases = ok;
    cfg.phase_count = 2;
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    CHECK_EQ(curfew_phase_count(cf), 2);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(phase_exit_after_unknown)
{
    /* C1, C5: exit_after must name a phase of this coordinator. */
    curfew *cf = NULL;
    curfew_config cfg = {.exit_after = "nope", .exit_code = 3};
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);
    cfg.exit_after = "";
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);

    /* A default name is not a phase of a custom list. */
    curfew_phase_config ph[] = {{.name = "one"}, {.name = "two"}};
    cfg.phases = ph;
    cfg.phase_count = 2;
    cfg.exit_after = "persist";
    CHECK_EQ(curfew_create(&cf, &cfg), -EINVAL);

    cfg.exit_after = "two";
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    /* C5: the exit point can be asked for (the process module finishes
     * a child there, P3). */
    CHECK_STR(curfew_exit_after(cf), "two");
    CHECK_EQ(curfew_destroy(cf), 0);

    curfew_config dflt = {.exit_after = "persist", .exit_code = 3};
    cf = NULL;
    CHECK_EQ(curfew_create(&cf, &dflt), 0);
    CHECK_STR(curfew_exit_after(cf), "persist");
    CHECK_EQ(curfew_destroy(cf), 0);

    cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK(curfew_exit_after(cf) == NULL);
    CHECK(curfew_exit_after(NULL) == NULL);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(phase_destroy_busy)
{
    /* C1: curfew_destroy while a shutdown is in progress returns -EBUSY
     * and frees nothing: the coordinator keeps working. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_blocker b = {0};
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "drain"), "held", NULL, NULL, &b),
        0);
    CHECK_EQ(curfew_begin(cf), 0);
    /* Begun, not yet dispatched. */
    CHECK_EQ(curfew_destroy(cf), -EBUSY);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_STR(curfew_current_phase(cf), "drain");
    CHECK_EQ(curfew_barrier_state(curfew_phase(cf, "drain")), CURFEW_WAITING);
    CHECK_EQ(curfew_destroy(cf), -EBUSY);
    CHECK_EQ(curfew_destroy(cf), -EBUSY);

    /* Still alive and working. */
    CHECK_EQ(curfew_in_or_beyond(cf, "drain"), 1);
    CHECK_EQ(curfew_in_or_beyond(cf, "children"), 0);
    CHECK_EQ(curfew_is_complete(cf), 0);
    char name[32];
    CHECK_EQ(curfew_blocker_describe(b, name, sizeof name, NULL, 0), 0);
    CHECK_STR(name, "held");
    CHECK_EQ(curfew_blocker_done(b), 0);
    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

TEST(phase_destroy_before_begin)
{
    /* C1: destroy before any shutdown returns 0 and frees everything
     * (blockers, nested barriers), which LeakSanitizer checks. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_blocker b1 = {0}, b2 = {0};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "persist"), "pending",
                                pending_trigger, NULL, &b1),
             0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "final"), "other", NULL, NULL, &b2),
        0);
    CHECK_EQ(curfew_blocker_status(b1, "status %d", 1), 0);
    curfew_barrier *svc = NULL;
    CHECK_EQ(curfew_barrier_create(cf, "svc", NULL, &svc), 0);
    CHECK_EQ(curfew_add_blocker(svc, "inner", NULL, NULL, NULL), 0);
    CHECK_EQ(curfew_barrier_wait_in(svc, curfew_phase(cf, "drain"), "svc"), 0);
    CHECK_EQ(curfew_add_blocker(NULL, "broken", NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_destroy(cf), 0);

    /* Destroy of NULL is a no-op (must not crash). */
    (void)curfew_destroy(NULL);
}

/* ---- C2: phase barriers ------------------------------------------------- */

TEST(phase_lookup)
{
    /* C2: curfew_phase returns one distinct barrier per phase, named after
     * the phase, and NULL for anything else. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_barrier *b[NPHASES];
    for (int i = 0; i < NPHASES; i++) {
        b[i] = curfew_phase(cf, default_names[i]);
        CHECK(b[i] != NULL);
        CHECK_STR(curfew_barrier_name(b[i]), default_names[i]);
        CHECK(curfew_phase(cf, default_names[i]) == b[i]);
        for (int j = 0; j < i; j++)
            CHECK(b[i] != b[j]);
    }
    CHECK(curfew_phase(cf, "unknown") == NULL);
    CHECK(curfew_phase(cf, "") == NULL);
    CHECK(curfew_phase(cf, "drain ") == NULL);
    CHECK(curfew_phase(cf, NULL) == NULL);
    CHECK(curfew_phase(NULL, "drain") == NULL);

    /* A service barrier with a phase's name is not that phase. */
    curfew_barrier *svc = NULL;
    CHECK_EQ(curfew_barrier_create(cf, "svc", NULL, &svc), 0);
    CHECK(curfew_phase(cf, "svc") == NULL);
    CHECK_STR(curfew_barrier_name(svc), "svc");
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- C3: begin and the order of phases ---------------------------------- */

TEST(phase_begin_twice)
{
    /* C3: curfew_begin is idempotent: 0, then -EALREADY, also after the
     * shutdown completed. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_begin(NULL), -EINVAL);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_begin(cf), -EALREADY);
    CHECK_EQ(curfew_begin_from_signal(cf), -EALREADY);
    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    CHECK_EQ(curfew_begin(cf), -EALREADY);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static curfew *sig_cf;
static volatile sig_atomic_t sig_rc = 99;
static volatile sig_atomic_t sig_count;

static void on_sigusr1(int sig)
{
    (void)sig;
    sig_rc = curfew_begin_from_signal(sig_cf);
    sig_count++;
}

static int count_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    atomic_fetch_add((atomic_int *)arg, 1);
    return CURFEW_DONE;
}

TEST(phase_begin_from_signal)
{
    /* C3: curfew_begin_from_signal from a real signal handler starts the
     * shutdown; the phases then run on dispatch. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    atomic_int ran = 0;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "first",
                                count_trigger, &ran, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "final"), "last",
                                count_trigger, &ran, NULL),
             0);
    sig_cf = cf;

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    CHECK_EQ(sigaction(SIGUSR1, &sa, &old), 0);

    CHECK_EQ(curfew_in_or_beyond(cf, "stop-accepting"), 0);
    CHECK_EQ(raise(SIGUSR1), 0);
    CHECK_EQ(sig_count, 1);
    CHECK_EQ(sig_rc, 0);
    CHECK_EQ(sigaction(SIGUSR1, &old, NULL), 0);

    /* Begun: visible at once, and the descriptor says there is work. */
    CHECK_EQ(curfew_in_or_beyond(cf, "stop-accepting"), 1);
    CHECK_STR(curfew_current_phase(cf), "stop-accepting");
    CHECK(cu_fd_readable(cf));
    CHECK_EQ(curfew_begin(cf), -EALREADY);
    CHECK_EQ(atomic_load(&ran), 0); /* triggers run on dispatch only */

    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    CHECK_EQ(atomic_load(&ran), 2);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* Strict order: every trigger and every completion is logged; a blocker of
 * phase k+1 must be triggered only after all of phase k finished. */
#define PER_PHASE 3
#define LOG_MAX 256

struct order_ctx;

struct order_blk {
    struct order_ctx *ctx;
    int phase, idx;
    curfew_blocker self;
    int triggered; /* under ctx->mu */
    int finished;  /* under ctx->mu */
};

struct order_ctx {
    pthread_mutex_t mu;
    int log[LOG_MAX]; /* kind * 1000 + phase * 10 + idx; T=1, F=2 */
    int nlog;
    struct order_blk blk[NPHASES][PER_PHASE];
    atomic_int stop;
};

static void order_log(struct order_ctx *c, int kind, int phase, int idx)
{
    if (c->nlog < LOG_MAX)
        c->log[c->nlog++] = kind * 1000 + phase * 10 + idx;
}

static int order_trigger(curfew_blocker self, void *arg)
{
    struct order_blk *b = arg;
    pthread_mutex_lock(&b->ctx->mu);
    b->self = self;
    b->triggered++;
    order_log(b->ctx, 1, b->phase, b->idx);
    int done_now = b->idx == 0;
    if (done_now) {
        b->finished = 1;
        order_log(b->ctx, 2, b->phase, b->idx);
    }
    pthread_mutex_unlock(&b->ctx->mu);
    return done_now ? CURFEW_DONE : CURFEW_PENDING;
}

static void *order_finisher(void *arg)
{
    struct order_ctx *c = arg;
    unsigned seed = 12345;
    while (!atomic_load(&c->stop)) {
        struct order_blk *pick = NULL;
        pthread_mutex_lock(&c->mu);
        /* Finish the triggered blockers in a shuffled order. */
        int start = (int)((seed = seed * 1103515245u + 12345u) >> 16);
        for (int n = 0; n < NPHASES * PER_PHASE && !pick; n++) {
            int k = (start + n) % (NPHASES * PER_PHASE);
            struct order_blk *b = &c->blk[k / PER_PHASE][k % PER_PHASE];
            if (b->triggered && !b->finished) {
                b->finished = 1;
                order_log(c, 2, b->phase, b->idx);
                pick = b;
            }
        }
        pthread_mutex_unlock(&c->mu);
        if (pick) {
            /* Logged before done, so a correct coordinator triggers the
             * next phase only after this log entry. */
            if (curfew_blocker_done(pick->self) != 0)
                abort();
        }
        th_sleep_ms(3 + (seed >> 20) % 5);
    }
    return NULL;
}

TEST(phase_strict_order)
{
    /* C3: phases run one after another: a blocker of phase k+1 is
     * triggered only after every blocker of phase k finished; each blocker
     * is triggered exactly once. */
    static struct order_ctx c;
    memset(&c, 0, sizeof c);
    pthread_mutex_init(&c.mu, NULL);
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    for (int k = 0; k < NPHASES; k++) {
        for (int i = 0; i < PER_PHASE; i++) {
            struct order_blk *b = &c.blk[k][i];
            b->ctx = &c;
            b->phase = k;
            b->idx = i;
            char name[32];
            snprintf(name, sizeof name, "p%d-b%d", k, i);
            CHECK_EQ(curfew_add_blocker(curfew_phase(cf, default_names[k]),
                                        name, order_trigger, b, NULL),
                     0);
        }
    }
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, order_finisher, &c), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    /* Dispatch often (not only on wake-ups), so that a phase that moved on
     * too early would be caught before its last blocker finished. */
    int r;
    int64_t end = th_now_ms() + 10000;
    while ((r = curfew_dispatch(cf)) == 0 && th_now_ms() < end) {
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        (void)poll(&p, 1, 1);
    }
    atomic_store(&c.stop, 1);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(r, 1);

    pthread_mutex_lock(&c.mu);
    for (int p = 0; p < c.nlog; p++) {
        int kind = c.log[p] / 1000, phase = c.log[p] / 10 % 100;
        if (kind != 1 || phase == 0)
            continue;
        /* Trigger of phase `phase` at p: all finishes of phase-1 before. */
        int seen = 0;
        for (int q = 0; q < p; q++)
            if (c.log[q] / 1000 == 2 && c.log[q] / 10 % 100 == phase - 1)
                seen++;
        if (seen != PER_PHASE)
            th_fail(__FILE__, __LINE__,
                    "blocker %d of phase %s triggered after only %d of %d "
                    "blockers of phase %s finished",
                    c.log[p] % 10, default_names[phase], seen, PER_PHASE,
                    default_names[phase - 1]);
        /* And no blocker of a later phase was triggered before it. */
        for (int q = 0; q < p; q++)
            CHECK(c.log[q] / 1000 != 1 || c.log[q] / 10 % 100 <= phase);
    }
    /* Every blocker triggered once and finished before the end (the last
     * phase too). */
    CHECK_EQ(c.nlog, 2 * NPHASES * PER_PHASE);
    for (int k = 0; k < NPHASES; k++)
        for (int i = 0; i < PER_PHASE; i++)
            CHECK_EQ(c.blk[k][i].triggered, 1);
    pthread_mutex_unlock(&c.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&c.mu);
}

struct ev_log {
    pthread_mutex_t mu;
    int n;
    int type[64];
    char phase[64][32];
    int64_t duration[64];
};

static void ev_record(const curfew_event *ev, void *arg)
{
    struct ev_log *l = arg;
    pthread_mutex_lock(&l->mu);
    if (l->n < 64) {
        l->type[l->n] = (int)ev->type;
        snprintf(l->phase[l->n], sizeof l->phase[0], "%s",
                 ev->phase ? ev->phase : "(none)");
        l->duration[l->n] = ev->duration_ms;
        l->n++;
    }
    pthread_mutex_unlock(&l->mu);
}

TEST(phase_events_once)
{
    /* C3, D4: each phase begins and ends exactly once, in order. */
    static struct ev_log l;
    memset(&l, 0, sizeof l);
    pthread_mutex_init(&l.mu, NULL);
    curfew_config cfg = {.on_event = ev_record, .event_arg = &l};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_blocker held = {0};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "held", NULL, NULL,
                                &held),
             0);
    atomic_int ran = 0;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "persist"), "quick",
                                count_trigger, &ran, NULL),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_begin(cf), -EALREADY);
    CHECK_EQ(cu_pump(cf), 0);
    CHECK_EQ(curfew_blocker_done(held), 0);
    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    /* More dispatches after completion change nothing. */
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(curfew_dispatch(cf), 1);
    CHECK_EQ(atomic_load(&ran), 1);

    pthread_mutex_lock(&l.mu);
    CHECK_EQ(l.n, 2 + 2 * NPHASES);
    CHECK_EQ(l.type[0], CURFEW_EV_BEGIN);
    for (int k = 0; k < NPHASES; k++) {
        CHECK_EQ(l.type[1 + 2 * k], CURFEW_EV_PHASE_BEGIN);
        CHECK_STR(l.phase[1 + 2 * k], default_names[k]);
        CHECK_EQ(l.type[2 + 2 * k], CURFEW_EV_PHASE_END);
        CHECK_STR(l.phase[2 + 2 * k], default_names[k]);
        CHECK(l.duration[2 + 2 * k] >= 0);
    }
    CHECK_EQ(l.type[l.n - 1], CURFEW_EV_COMPLETE);
    pthread_mutex_unlock(&l.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    pthread_mutex_destroy(&l.mu);
}

/* ---- C4: in_or_beyond and current_phase --------------------------------- */

TEST(phase_progress_queries)
{
    /* C4: curfew_in_or_beyond and curfew_current_phase follow the
     * shutdown as it moves from phase to phase. */
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_blocker h[NPHASES];
    for (int k = 0; k < NPHASES; k++)
        CHECK_EQ(curfew_add_blocker(curfew_phase(cf, default_names[k]), "held",
                                    NULL, NULL, &h[k]),
                 0);

    CHECK(curfew_current_phase(cf) == NULL);
    for (int k = 0; k < NPHASES; k++)
        CHECK_EQ(curfew_in_or_beyond(cf, default_names[k]), 0);
    CHECK_EQ(curfew_in_or_beyond(cf, "unknown"), -EINVAL);
    CHECK_EQ(curfew_in_or_beyond(cf, NULL), -EINVAL);
    CHECK_EQ(curfew_in_or_beyond(NULL, "drain"), -EINVAL);
    CHECK(curfew_current_phase(NULL) == NULL);
    CHECK_EQ(curfew_is_complete(cf), 0);

    CHECK_EQ(curfew_begin(cf), 0);
    /* From curfew_begin on, before any dispatch. */
    CHECK_STR(curfew_current_phase(cf), default_names[0]);
    CHECK_EQ(curfew_in_or_beyond(cf, default_names[0]), 1);
    for (int k = 1; k < NPHASES; k++)
        CHECK_EQ(curfew_in_or_beyond(cf, default_names[k]), 0);
    CHECK_EQ(curfew_in_or_beyond(cf, "unknown"), -EINVAL);

    for (int k = 0; k < NPHASES; k++) {
        CHECK_EQ(cu_pump(cf), 0);
        CHECK_STR(curfew_current_phase(cf), default_names[k]);
        for (int j = 0; j < NPHASES; j++)
            CHECK_EQ(curfew_in_or_beyond(cf, default_names[j]), j <= k);
        CHECK_EQ(curfew_barrier_state(curfew_phase(cf, default_names[k])),
                 CURFEW_WAITING);
        if (k + 1 < NPHASES)
            CHECK_EQ(
                curfew_barrier_state(curfew_phase(cf, default_names[k + 1])),
                CURFEW_NOT_STARTED);
        CHECK_EQ(curfew_is_complete(cf), 0);
        CHECK_EQ(curfew_blocker_done(h[k]), 0);
    }
    CHECK_EQ(cu_pump(cf), 1);
    CHECK_STR(curfew_current_phase(cf), "final");
    for (int k = 0; k < NPHASES; k++)
        CHECK_EQ(curfew_in_or_beyond(cf, default_names[k]), 1);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct reader {
    curfew *cf;
    atomic_int stop;
    atomic_int begun; /* set by the main thread before curfew_begin */
    int iterations;
    int max_seen;
    int saw_null;
    char error[256];
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    int max_seen = -1;
    int prev_in[NPHASES] = {0};
    /* One last round after stop was set (it is set once the shutdown has
     * completed): however late this thread got to run, it sees the end. */
    for (int last = 0; !last && !r->error[0];) {
        last = atomic_load(&r->stop);
        /* Highest phase first: phases only move forward (C3), so a phase
         * that is "in or beyond" makes every earlier one so too. */
        int in[NPHASES];
        int any = 0;
        for (int k = NPHASES - 1; k >= 0; k--) {
            in[k] = curfew_in_or_beyond(r->cf, default_names[k]);
            if (in[k] != 0 && in[k] != 1) {
                snprintf(r->error, sizeof r->error,
                         "in_or_beyond(%s) returned %d", default_names[k],
                         in[k]);
                break;
            }
            if (any && !in[k])
                snprintf(r->error, sizeof r->error,
                         "in_or_beyond(%s) 0 after a later phase was 1",
                         default_names[k]);
            if (prev_in[k] && !in[k])
                snprintf(r->error, sizeof r->error,
                         "in_or_beyond(%s) went back from 1 to 0",
                         default_names[k]);
            prev_in[k] = in[k];
            any |= in[k];
        }
        const char *cur = curfew_current_phase(r->cf);
        int idx = phase_index(cur);
        if (idx == -2) {
            snprintf(r->error, sizeof r->error,
                     "current_phase returned an unknown name");
        } else if (idx == -1) {
            r->saw_null = 1;
            if (max_seen >= 0 || any)
                snprintf(r->error, sizeof r->error,
                         "current_phase NULL after the shutdown began");
        } else {
            if (idx < max_seen)
                snprintf(r->error, sizeof r->error,
                         "current_phase went back from %s to %s",
                         default_names[max_seen], default_names[idx]);
            if (!in[idx]) {
                /* in[] was read before cur: recheck now. */
                if (curfew_in_or_beyond(r->cf, default_names[idx]) != 1)
                    snprintf(r->error, sizeof r->error,
                             "current phase %s not in_or_beyond",
                             default_names[idx]);
            }
            if (idx > max_seen)
                max_seen = idx;
        }
        /* The main thread sets begun before calling curfew_begin: if it is
         * still clear after the queries, they all ran before the begin. */
        if (!atomic_load(&r->begun) && (idx != -1 || any))
            snprintf(r->error, sizeof r->error,
                     "shutdown visible before curfew_begin was called");
        r->iterations++;
    }
    r->max_seen = max_seen;
    return NULL;
}

TEST(phase_queries_from_thread)
{
    /* C4: both queries are safe from another thread while the shutdown
     * runs (ThreadSanitizer checks for races), and what they show only
     * moves forward (C3). */
    static struct reader r;
    memset(&r, 0, sizeof r);
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    r.cf = cf;
    curfew_blocker h[NPHASES];
    for (int k = 0; k < NPHASES; k++)
        CHECK_EQ(curfew_add_blocker(curfew_phase(cf, default_names[k]), "held",
                                    NULL, NULL, &h[k]),
                 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, reader_main, &r), 0);
    th_sleep_ms(5);
    atomic_store(&r.begun, 1);
    CHECK_EQ(curfew_begin(cf), 0);
    for (int k = 0; k < NPHASES; k++) {
        CHECK_EQ(cu_pump(cf), 0);
        th_sleep_ms(3);
        CHECK_EQ(curfew_blocker_done(h[k]), 0);
    }
    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    th_sleep_ms(5);
    atomic_store(&r.stop, 1);
    CHECK_EQ(pthread_join(th, NULL), 0);
    if (r.error[0])
        th_fail(__FILE__, __LINE__, "reader: %s", r.error);
    CHECK(r.iterations > 0);
    CHECK_EQ(r.max_seen, NPHASES - 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- C5: fast exit ------------------------------------------------------ */

struct fx {
    int fd;
    sem_t go;
    curfew_blocker late;
};

struct mark {
    struct fx *fx;
    char c;
    int pending;
};

static void put_mark(int fd, char c)
{
    ssize_t n = write(fd, &c, 1);
    (void)n;
}

static int mark_trigger(curfew_blocker self, void *arg)
{
    struct mark *m = arg;
    put_mark(m->fx->fd, m->c);
    if (m->pending) {
        m->fx->late = self;
        sem_post(&m->fx->go);
        return CURFEW_PENDING;
    }
    return CURFEW_DONE;
}

static void *late_finisher(void *arg)
{
    struct fx *fx = arg;
    while (sem_wait(&fx->go) != 0)
        ;
    th_sleep_ms(50);
    put_mark(fx->fd, 'e');
    if (curfew_blocker_done(fx->late) != 0)
        put_mark(fx->fd, '!');
    return NULL;
}

/* argv: write fd, "fast" or "full". Writes a marker byte per trigger. */
CHILD(phase_exit_child)
{
    if (argc < 2)
        return 100;
    static struct fx fx;
    fx.fd = atoi(argv[0]);
    int fast = strcmp(argv[1], "fast") == 0;
    sem_init(&fx.go, 0, 0);
    curfew_config cfg = {0};
    if (fast) {
        cfg.exit_after = "persist";
        cfg.exit_code = 42;
    }
    curfew *cf = NULL;
    if (curfew_create(&cf, &cfg) != 0)
        return 101;
    static struct mark marks[NPHASES] = {
        {&fx, 'a', 0}, {&fx, 'b', 0}, {&fx, 'c', 0}, {&fx, 'd', 1},
        {&fx, 'T', 0}, {&fx, 'U', 0}, {&fx, 'V', 0}};
    for (int k = 0; k < NPHASES; k++)
        if (curfew_add_blocker(curfew_phase(cf, default_names[k]), "marker",
                               mark_trigger, &marks[k], NULL) != 0)
            return 102;
    pthread_t th;
    if (pthread_create(&th, NULL, late_finisher, &fx) != 0)
        return 103;
    /* A fast exit never comes back to join it: detached, its end is no
     * leak (ThreadSanitizer reports finished threads nobody joined). */
    if (fast && pthread_detach(th) != 0)
        return 107;
    if (curfew_begin(cf) != 0)
        return 104;
    int r = curfew_run(cf);
    /* Only a full teardown gets here. */
    put_mark(fx.fd, 'Z');
    if (!fast)
        pthread_join(th, NULL);
    if (r != 0)
        return 105;
    if (curfew_destroy(cf) != 0)
        return 106;
    sem_destroy(&fx.go);
    return fast ? 3 : 0;
}

static void run_exit_child(const char *mode, int want_status,
                           const char *want_marks)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    char fdbuf[16];
    snprintf(fdbuf, sizeof fdbuf, "%d", p[1]);
    pid_t pid = th_spawn_child("phase_exit_child", fdbuf, mode, (char *)NULL);
    close(p[1]);
    int status = th_wait_child(pid, 20000);
    char buf[64];
    size_t n = 0;
    for (;;) {
        ssize_t k = read(p[0], buf + n, sizeof buf - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
        if (n == sizeof buf - 1)
            break;
    }
    buf[n] = 0;
    close(p[0]);
    if (!WIFEXITED(status))
        th_fail(__FILE__, __LINE__, "child (%s) did not exit: status %#x", mode,
                status);
    CHECK_EQ(WEXITSTATUS(status), want_status);
    CHECK_STR(buf, want_marks);
}

TEST(phase_fast_exit)
{
    /* C5: with exit_after = "persist" the process _exits with exit_code
     * once persist completed (its late blocker included); no trigger of a
     * later phase ("telemetry" on) ever runs. */
    run_exit_child("fast", 42, "abcde");
}

TEST(phase_full_teardown)
{
    /* C5: exit_after == NULL runs every phase and curfew_run returns. */
    run_exit_child("full", 0, "abcdeTUVZ");
}

/* ---- C6: zero idle cost ------------------------------------------------- */

static int count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        th_fail(__FILE__, __LINE__, "opendir /proc/self/task failed");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

TEST(phase_idle_no_thread)
{
    /* C6: before curfew_begin, no call starts a thread. */
    int before = count_threads();
    CHECK(before >= 1);
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(count_threads(), before);

    curfew_blocker b[NPHASES];
    for (int k = 0; k < NPHASES; k++)
        CHECK_EQ(curfew_add_blocker(curfew_phase(cf, default_names[k]), "idle",
                                    pending_trigger, NULL, &b[k]),
                 0);
    curfew_barrier *svc = NULL;
    curfew_barrier_config bc = {.warn_after_ms = 100, .crash_after_ms = 200};
    CHECK_EQ(curfew_barrier_create(cf, "svc", &bc, &svc), 0);
    curfew_blocker sb = {0};
    CHECK_EQ(curfew_add_blocker(svc, "svc-blocker", NULL, NULL, &sb), 0);
    CHECK_EQ(curfew_barrier_wait_in(svc, curfew_phase(cf, "drain"), "svc"), 0);
    for (int k = 0; k < NPHASES; k++)
        CHECK_EQ(curfew_blocker_status(b[k], "waiting for %d", k), 0);
    CHECK_EQ(curfew_blocker_done(b[0]), 0);
    CHECK_EQ(curfew_blocker_done(b[1]), 0);
    CHECK_EQ(curfew_blocker_fail(b[2], -EIO, "disk"), 0);
    CHECK_EQ(curfew_blocker_done(sb), 0);
    CHECK_EQ(curfew_remove_blocker(b[3]), 0);
    CHECK_EQ(curfew_in_or_beyond(cf, "drain"), 0);
    CHECK(curfew_current_phase(cf) == NULL);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(count_threads(), before);
    /* C6: and it does not sleep its way into one either. */
    th_sleep_ms(50);
    CHECK_EQ(count_threads(), before);
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(count_threads(), before);
}

TEST(phase_idle_fd_quiet)
{
    /* C6, D1: before curfew_begin the descriptor never becomes readable,
     * even after blockers finished, and there is no deadline. */
    curfew_config cfg = {.warn_after_ms = 20,
                         .crash_after_ms = 40,
                         .on_timeout = CURFEW_TIMEOUT_CONTINUE};
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    CHECK(curfew_fd(cf) >= 0);
    CHECK_EQ(curfew_timeout_ms(cf), -1);
    CHECK(!cu_fd_readable(cf));

    curfew_blocker b1 = {0}, b2 = {0}, b3 = {0};
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "drain"), "one", NULL, NULL, &b1),
        0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "persist"), "two",
                                pending_trigger, NULL, &b2),
             0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "final"), "three", NULL, NULL, &b3),
        0);
    CHECK(!cu_fd_readable(cf));
    CHECK_EQ(curfew_blocker_done(b1), 0);
    CHECK_EQ(curfew_blocker_fail(b2, -EIO, "x"), 0);
    CHECK_EQ(curfew_blocker_status(b3, "busy"), 0);
    CHECK(!cu_fd_readable(cf));
    CHECK_EQ(curfew_timeout_ms(cf), -1);
    CHECK_EQ(curfew_dispatch(cf), 0);
    /* Past every configured timer: still nothing to do. */
    th_sleep_ms(60);
    CHECK(!cu_fd_readable(cf));
    CHECK_EQ(curfew_timeout_ms(cf), -1);
    curfew_stats st;
    CHECK_EQ(curfew_stats_get(cf, &st), 0);
    CHECK_EQ(st.wakeups, 0);

    /* After curfew_begin there is work. */
    CHECK_EQ(curfew_blocker_done(b3), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK(cu_fd_readable(cf));
    CHECK_EQ(cu_drive(cf, 5000, 50), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}
