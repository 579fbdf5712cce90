/* Tasks and the final hook (CONTRACT.md K3, K4): both shutdown behaviours
 * posted at every state, skipped tasks counted and reported, on_killing
 * exactly once on the worker's thread, and a phase blocker that ends only
 * at DEAD.
 *
 * SPDX-License-Identifier: MIT
 */
#include "report/jsonr.h"
#include "wk_util.h"

#include <errno.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

#define LOG_MAX 64

/* What ran, in order, on the worker's thread. */
struct tlog {
    int ids[LOG_MAX];
    int states[LOG_MAX];
    int n;
};

struct tentry {
    struct tlog *log;
    int id;
};

static void logged_task(curfew_worker *w, void *arg)
{
    struct tentry *e = arg;
    CHECK(e->log->n < LOG_MAX);
    e->log->states[e->log->n] = curfew_worker_state(w);
    e->log->ids[e->log->n++] = e->id;
}

static void noop_task(curfew_worker *w, void *arg)
{
    (void)w;
    (void)arg;
}

static int ran(const struct tlog *log, int id)
{
    int n = 0;
    for (int i = 0; i < log->n; i++)
        n += log->ids[i] == id;
    return n;
}

/* Posts both behaviours; returns the two results in rc[0] (BLOCK) and
 * rc[1] (SKIP). */
static void post_both(curfew_worker *w, int rc[2])
{
    rc[0] = curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, noop_task, NULL);
    rc[1] =
        curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, noop_task, NULL);
}

/* ---- K3: every state ---------------------------------------------------- */

struct every {
    wk_hold hold;
    int canceling_rc[2]; /* posted by a task at CANCELING */
    int canceling_state;
    int killing_rc[2]; /* posted from on_killing */
    atomic_int killed;
};

static void post_at_canceling(curfew_worker *w, void *arg)
{
    struct every *e = arg;
    e->canceling_state = curfew_worker_state(w);
    post_both(w, e->canceling_rc);
}

static void every_killing(curfew_worker *w, void *arg)
{
    struct every *e = arg;
    post_both(w, e->killing_rc);
    atomic_fetch_add(&e->killed, 1);
}

TEST(wk_tasks_every_state)
{
    /* K3: tasks of both behaviours posted at every state. Before cancel
     * both are accepted; every BLOCK_SHUTDOWN task posted before the
     * cancel runs, in order; SKIP_ON_SHUTDOWN tasks not started at
     * CANCELING are dropped (the running one, started before, finishes)
     * and counted at once; from CANCELING on (from other threads, from a
     * task of the worker, from on_killing, at DEAD) a post is refused with
     * -ESHUTDOWN, never silently dropped. */
    struct every ev;
    memset(&ev, 0, sizeof(ev));
    wk_hold_init(&ev.hold);
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = "every-state";
    wc.on_killing = every_killing;
    wc.arg = &ev;
    curfew_worker *w;
    CHECK_EQ(curfew_worker_start(&wc, &w), 0);
    int rc[2];
    /* PENDING or RUNNING: whichever it is now, both are accepted. */
    post_both(w, rc);
    CHECK_EQ(rc[0], 0);
    CHECK_EQ(rc[1], 0);

    struct tlog log;
    memset(&log, 0, sizeof(log));
    struct tentry e[12];
    for (int i = 0; i < 12; i++) {
        e[i].log = &log;
        e[i].id = i;
    }
    /* The holder is itself skippable: started, so it is not dropped. */
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, wk_hold_task,
                                &ev.hold),
             0);
    wk_hold_wait_entered(&ev.hold, 5000);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_RUNNING);
    /* RUNNING: ids 0-9, even ones BLOCK, odd ones SKIP. */
    for (int i = 0; i < 10; i++)
        CHECK_EQ(curfew_worker_post(w,
                                    i % 2 ? CURFEW_TASK_SKIP_ON_SHUTDOWN
                                          : CURFEW_TASK_BLOCK_SHUTDOWN,
                                    logged_task, &e[i]),
                 0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN,
                                post_at_canceling, &ev),
             0);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.tasks_skipped, 0);

    CHECK_EQ(curfew_worker_cancel(w), 0);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    /* Counted at the cancel, while the held task still runs. */
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.tasks_skipped, 5);
    post_both(w, rc);
    CHECK_EQ(rc[0], -ESHUTDOWN);
    CHECK_EQ(rc[1], -ESHUTDOWN);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, logged_task, &e[10]),
        -ESHUTDOWN);

    wk_gate_open(&ev.hold.gate);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(ev.hold.state_inside, CURFEW_WORKER_RUNNING);
    CHECK_EQ(atomic_load(&ev.hold.left), 1);
    /* Every BLOCK_SHUTDOWN task ran, once, in the order posted, at
     * CANCELING; no skippable one did. */
    CHECK_EQ(log.n, 5);
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(log.ids[i], 2 * i);
        CHECK_EQ(log.states[i], CURFEW_WORKER_CANCELING);
    }
    for (int i = 1; i < 10; i += 2)
        CHECK_EQ(ran(&log, i), 0);
    CHECK_EQ(ran(&log, 10), 0);
    CHECK_EQ(ev.canceling_state, CURFEW_WORKER_CANCELING);
    CHECK_EQ(ev.canceling_rc[0], -ESHUTDOWN);
    CHECK_EQ(ev.canceling_rc[1], -ESHUTDOWN);
    CHECK_EQ(atomic_load(&ev.killed), 1);
    CHECK_EQ(ev.killing_rc[0], -ESHUTDOWN);
    CHECK_EQ(ev.killing_rc[1], -ESHUTDOWN);
    post_both(w, rc); /* DEAD */
    CHECK_EQ(rc[0], -ESHUTDOWN);
    CHECK_EQ(rc[1], -ESHUTDOWN);
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    /* 2 first ones + the holder + 5 BLOCK + post_at_canceling. */
    CHECK_EQ(st.tasks_run, 9);
    CHECK_EQ(st.tasks_skipped, 5);
    CHECK_EQ(curfew_worker_free(w), 0);
    wk_hold_destroy(&ev.hold);
}

TEST(wk_tasks_closing_then_cancel)
{
    /* K3: at CLOSING no task is accepted (either behaviour), and the
     * queued ones, skippable included, still run; a cancel that comes
     * while the worker is CLOSING drops the skippable ones not started. */
    for (int cancel = 0; cancel < 2; cancel++) {
        wk_hold hold;
        wk_hold_init(&hold);
        curfew_worker_config wc;
        memset(&wc, 0, sizeof(wc));
        curfew_worker *w;
        CHECK_EQ(curfew_worker_start(&wc, &w), 0);
        struct tlog log;
        memset(&log, 0, sizeof(log));
        struct tentry e[4];
        for (int i = 0; i < 4; i++) {
            e[i].log = &log;
            e[i].id = i;
        }
        CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task,
                                    &hold),
                 0);
        for (int i = 0; i < 4; i++)
            CHECK_EQ(curfew_worker_post(w,
                                        i % 2 ? CURFEW_TASK_SKIP_ON_SHUTDOWN
                                              : CURFEW_TASK_BLOCK_SHUTDOWN,
                                        logged_task, &e[i]),
                     0);
        wk_hold_wait_entered(&hold, 5000);
        CHECK_EQ(curfew_worker_close(w), 0);
        int rc[2];
        post_both(w, rc);
        CHECK_EQ(rc[0], -ESHUTDOWN);
        CHECK_EQ(rc[1], -ESHUTDOWN);
        if (cancel) {
            CHECK_EQ(curfew_worker_cancel(w), 0);
            CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
        }
        wk_gate_open(&hold.gate);
        CHECK_EQ(curfew_worker_join(w, 5000), 0);
        curfew_worker_stats st;
        CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
        if (cancel) {
            CHECK_EQ(log.n, 2);
            CHECK_EQ(log.ids[0], 0);
            CHECK_EQ(log.ids[1], 2);
            CHECK_EQ(st.tasks_skipped, 2);
            CHECK_EQ(st.tasks_run, 3);
        } else {
            CHECK_EQ(log.n, 4);
            for (int i = 0; i < 4; i++) {
                CHECK_EQ(log.ids[i], i);
                CHECK_EQ(log.states[i], CURFEW_WORKER_CLOSING);
            }
            CHECK_EQ(st.tasks_skipped, 0);
            CHECK_EQ(st.tasks_run, 5);
        }
        CHECK_EQ(curfew_worker_free(w), 0);
        wk_hold_destroy(&hold);
    }
}

/* ---- K3: the drop is reported ------------------------------------------- */

static const curfew_phase_config two_phases[] = {{"drain", 0, 0},
                                                 {"telemetry", 0, 0}};

TEST(wk_skipped_in_record)
{
    /* K3: a worker attached to a phase reports its drops: its blocker's
     * final status, kept in the shutdown record (R2), says
     * "dead: N tasks ran, M skipped", and the blocker's result is ok. */
    char dir[WK_PATH], record[WK_PATH];
    wk_tmpdir(dir, sizeof(dir));
    wk_path(record, sizeof(record), dir, "record.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = two_phases;
    cfg.phase_count = 2;
    cfg.record_path = record;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = "queue-worker";
    wc.cf = cf;
    wc.phase = "drain";
    curfew_worker *w;
    CHECK_EQ(curfew_worker_start(&wc, &w), 0);
    wk_hold hold;
    wk_hold_init(&hold);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task, &hold),
        0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(
            curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, noop_task, NULL),
            0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, noop_task,
                                    NULL),
                 0);
    wk_hold_wait_entered(&hold, 5000);
    CHECK_EQ(curfew_begin(cf), 0);
    /* The phase's trigger cancels the worker. */
    int64_t end = th_now_ms() + 5000;
    while (curfew_worker_state(w) < CURFEW_WORKER_CANCELING) {
        CHECK(th_now_ms() < end);
        wk_drive_for(cf, 2);
    }
    wk_gate_open(&hold.gate);
    wk_drive(cf, 5000);

    size_t len;
    char *text = wk_read_file(record, &len);
    CHECK(text != NULL);
    curfew__jval *rec = NULL;
    char err[128];
    if (curfew__json_parse(text, len, &rec, err, sizeof(err)) != 0)
        th_fail(__FILE__, __LINE__, "record: %s\n%s", err, text);
    const curfew__jval *phases = curfew__json_get(rec, "phases");
    CHECK(phases && phases->type == CURFEW__J_ARR && phases->n == 2);
    const curfew__jval *drain = &phases->items[0];
    CHECK_STR(curfew__json_str(curfew__json_get(drain, "name")), "drain");
    const curfew__jval *bl = curfew__json_get(drain, "blockers");
    CHECK(bl && bl->type == CURFEW__J_ARR && bl->n == 1);
    const curfew__jval *b = &bl->items[0];
    CHECK_STR(curfew__json_str(curfew__json_get(b, "name")), "queue-worker");
    CHECK_STR(curfew__json_str(curfew__json_get(b, "result")), "ok");
    const char *status = curfew__json_str(curfew__json_get(b, "status"));
    if (!status || strcmp(status, "dead: 4 tasks ran, 5 skipped") != 0)
        th_fail(__FILE__, __LINE__, "status %s in\n%s",
                status ? status : "(none)", text);
    curfew__json_free(rec);
    free(text);

    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.tasks_run, 4);
    CHECK_EQ(st.tasks_skipped, 5);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    wk_hold_destroy(&hold);
    wk_rmdir(dir);
}

/* ---- K4: on_killing ----------------------------------------------------- */

struct final_hook {
    pthread_t task_thread;
    atomic_int task_ran;
    atomic_int calls;
    int state;
    int same_thread;
    int rc_post[2], rc_close, rc_cancel, rc_join, rc_free;
    int skipped_seen;
    uint64_t run_seen;
};

static void hook_task(curfew_worker *w, void *arg)
{
    (void)w;
    struct final_hook *f = arg;
    f->task_thread = pthread_self();
    atomic_store(&f->task_ran, 1);
}

static void final_killing(curfew_worker *w, void *arg)
{
    struct final_hook *f = arg;
    f->state = curfew_worker_state(w);
    f->same_thread = pthread_equal(pthread_self(), f->task_thread);
    post_both(w, f->rc_post);
    f->rc_close = curfew_worker_close(w);
    f->rc_cancel = curfew_worker_cancel(w);
    f->rc_join = curfew_worker_join(w, 0);
    f->rc_free = curfew_worker_free(w);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    f->run_seen = st.tasks_run;
    atomic_fetch_add(&f->calls, 1);
}

TEST(wk_on_killing_once)
{
    /* K4: on_killing runs exactly once, on the worker's own thread, with
     * the worker in KILLING, after every task (its counters are final);
     * nothing can be posted, closed, cancelled, joined or freed from it.
     * Cancelling twice, or closing then cancelling, does not run it
     * again. */
    for (int variant = 0; variant < 3; variant++) {
        struct final_hook f;
        memset(&f, 0, sizeof(f));
        curfew_worker_config wc;
        memset(&wc, 0, sizeof(wc));
        wc.name = "hooked";
        wc.on_killing = final_killing;
        wc.arg = &f;
        curfew_worker *w;
        CHECK_EQ(curfew_worker_start(&wc, &w), 0);
        CHECK_EQ(
            curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, hook_task, &f),
            0);
        wk_wait_flag(&f.task_ran, 1, 5000);
        for (int i = 0; i < 3; i++)
            CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN,
                                        noop_task, NULL),
                     0);
        if (variant == 0) {
            CHECK_EQ(curfew_worker_cancel(w), 0);
            CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
        } else if (variant == 1) {
            CHECK_EQ(curfew_worker_close(w), 0);
            int rc = curfew_worker_cancel(w);
            CHECK(rc == 0 || rc == -EALREADY);
        } else {
            CHECK_EQ(curfew_worker_close(w), 0);
        }
        CHECK_EQ(curfew_worker_join(w, 5000), 0);
        th_sleep_ms(10);
        CHECK_EQ(atomic_load(&f.calls), 1);
        CHECK_EQ(f.state, CURFEW_WORKER_KILLING);
        CHECK(f.same_thread);
        CHECK_EQ(f.run_seen, 4);
        CHECK_EQ(f.rc_post[0], -ESHUTDOWN);
        CHECK_EQ(f.rc_post[1], -ESHUTDOWN);
        CHECK_EQ(f.rc_close, -EALREADY);
        CHECK_EQ(f.rc_cancel, -EALREADY);
        CHECK_EQ(f.rc_join, -EDEADLK);
        CHECK_EQ(f.rc_free, -EBUSY);
        CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_DEAD);
        CHECK_EQ(curfew_worker_free(w), 0);
    }
}

/* ---- K4: the phase blocker ends at DEAD --------------------------------- */

struct phase_watch {
    curfew *cf;
    curfew_worker *w;
    atomic_int killing_entered, killing_left;
    wk_gate killing_gate; /* on_killing waits here */
    atomic_int drain_end_seen;
    int state_at_drain_end;
    int killing_done_at_drain_end;
};

static void gated_killing(curfew_worker *w, void *arg)
{
    struct phase_watch *p = arg;
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_KILLING);
    atomic_store(&p->killing_entered, 1);
    wk_gate_wait(&p->killing_gate);
    atomic_store(&p->killing_left, 1);
}

static void watch_event(const curfew_event *ev, void *arg)
{
    struct phase_watch *p = arg;
    if (ev->type == CURFEW_EV_PHASE_END && strcmp(ev->phase, "drain") == 0) {
        p->state_at_drain_end = curfew_worker_state(p->w);
        p->killing_done_at_drain_end = atomic_load(&p->killing_left);
        atomic_store(&p->drain_end_seen, 1);
    }
}

static void check_held(struct phase_watch *p, int worker_state)
{
    /* The phase waits: drain is WAITING, telemetry has not begun. */
    CHECK_EQ(curfew_worker_state(p->w), worker_state);
    CHECK_EQ(curfew_barrier_state(curfew_phase(p->cf, "drain")),
             CURFEW_WAITING);
    CHECK_EQ(curfew_barrier_state(curfew_phase(p->cf, "telemetry")),
             CURFEW_NOT_STARTED);
    CHECK_EQ(curfew_in_or_beyond(p->cf, "telemetry"), 0);
    CHECK_STR(curfew_current_phase(p->cf), "drain");
    CHECK_EQ(atomic_load(&p->drain_end_seen), 0);
}

TEST(wk_phase_ends_at_dead)
{
    /* K4: a worker attached to "drain" with a strong reference held: the
     * phase's trigger cancels it, but the phase stays WAITING for as long
     * as the reference is held (CANCELING) and as long as on_killing runs
     * (KILLING); it completes only once the worker is DEAD, after
     * on_killing returned, never at CANCELING. */
    struct phase_watch p;
    memset(&p, 0, sizeof(p));
    wk_gate_init(&p.killing_gate);
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = two_phases;
    cfg.phase_count = 2;
    cfg.on_event = watch_event;
    cfg.event_arg = &p;
    CHECK_EQ(curfew_create(&p.cf, &cfg), 0);
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = "reporter";
    wc.cf = p.cf;
    wc.phase = "drain";
    wc.on_killing = gated_killing;
    wc.arg = &p;
    CHECK_EQ(curfew_worker_start(&wc, &p.w), 0);
    curfew_worker_ref *ref;
    CHECK_EQ(curfew_worker_ref_strong(p.w, "last-upload", &ref), 0);

    CHECK_EQ(curfew_begin(p.cf), 0);
    CHECK_EQ(wk_drive_for(p.cf, 150), 0);
    check_held(&p, CURFEW_WORKER_CANCELING); /* cancelled by the trigger */
    CHECK_EQ(atomic_load(&p.killing_entered), 0);

    CHECK_EQ(curfew_worker_ref_release(ref), 0);
    wk_wait_flag(&p.killing_entered, 1, 5000);
    CHECK_EQ(wk_drive_for(p.cf, 100), 0);
    check_held(&p, CURFEW_WORKER_KILLING);

    wk_gate_open(&p.killing_gate);
    wk_drive(p.cf, 5000);
    CHECK_EQ(atomic_load(&p.drain_end_seen), 1);
    CHECK_EQ(p.state_at_drain_end, CURFEW_WORKER_DEAD);
    CHECK_EQ(p.killing_done_at_drain_end, 1);
    CHECK_EQ(curfew_barrier_state(curfew_phase(p.cf, "drain")),
             CURFEW_COMPLETE);
    CHECK_EQ(curfew_worker_join(p.w, 5000), 0);
    CHECK_EQ(curfew_worker_free(p.w), 0);
    CHECK_EQ(curfew_destroy(p.cf), 0);
    wk_gate_destroy(&p.killing_gate);
}

struct early {
    atomic_int killed;
};

static void early_killing(curfew_worker *w, void *arg)
{
    (void)w;
    struct early *e = arg;
    atomic_fetch_add(&e->killed, 1);
}

static void closing_task(curfew_worker *w, void *arg)
{
    (void)arg;
    CHECK_EQ(curfew_worker_close(w), 0);
}

TEST(wk_phase_worker_gone_before)
{
    /* K4: a worker attached to a phase that closed itself and died before
     * the shutdown has already finished its blocker: the phase does not
     * wait, and on_killing is not run again. One cancelled before the
     * shutdown but held by a strong reference keeps the phase waiting
     * until released. */
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = two_phases;
    cfg.phase_count = 2;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    struct early e1, e2;
    memset(&e1, 0, sizeof(e1));
    memset(&e2, 0, sizeof(e2));
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.cf = cf;
    wc.phase = "drain";
    wc.on_killing = early_killing;
    wc.name = "gone";
    wc.arg = &e1;
    curfew_worker *gone, *held;
    CHECK_EQ(curfew_worker_start(&wc, &gone), 0);
    wc.name = "held";
    wc.arg = &e2;
    CHECK_EQ(curfew_worker_start(&wc, &held), 0);
    CHECK_EQ(curfew_worker_post(gone, CURFEW_TASK_BLOCK_SHUTDOWN, closing_task,
                                NULL),
             0);
    CHECK_EQ(curfew_worker_join(gone, 5000), 0);
    CHECK_EQ(atomic_load(&e1.killed), 1);
    curfew_worker_ref *ref;
    CHECK_EQ(curfew_worker_ref_strong(held, "pre-shutdown", &ref), 0);
    CHECK_EQ(curfew_worker_cancel(held), 0);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(wk_drive_for(cf, 100), 0);
    CHECK_EQ(curfew_barrier_state(curfew_phase(cf, "drain")), CURFEW_WAITING);
    CHECK_EQ(curfew_worker_state(held), CURFEW_WORKER_CANCELING);
    CHECK_EQ(curfew_worker_ref_release(ref), 0);
    wk_drive(cf, 5000);
    CHECK_EQ(atomic_load(&e1.killed), 1);
    CHECK_EQ(atomic_load(&e2.killed), 1);
    CHECK_EQ(curfew_worker_free(gone), 0);
    CHECK_EQ(curfew_worker_join(held, 5000), 0);
    CHECK_EQ(curfew_worker_free(held), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}
