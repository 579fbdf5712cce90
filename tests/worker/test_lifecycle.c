/* Worker lifecycle (CONTRACT.md K1, with K2 and K4 where a transition
 * needs them): states only move forward and are readable from any thread;
 * a worker that closes itself and one cancelled by a shutdown; join with
 * a timeout, join from the worker's own thread, free too early; bad
 * arguments.
 *
 * SPDX-License-Identifier: MIT
 */
#include "wk_util.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

static curfew_worker *start_plain(const char *name,
                                  void (*on_killing)(curfew_worker *, void *),
                                  void *arg)
{
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = name;
    wc.on_killing = on_killing;
    wc.arg = arg;
    curfew_worker *w = NULL;
    CHECK_EQ(curfew_worker_start(&wc, &w), 0);
    CHECK(w != NULL);
    return w;
}

/* ---- K1: forward only, readable from any thread ------------------------ */

#define NREADERS 3

struct reader {
    curfew_worker *w;
    pthread_t th;
    atomic_uint seen; /* bit i: state i was seen */
    int backwards;    /* a sample lower than the one before */
    int first, last;
    uint64_t samples;
};

static void *reader_main(void *p)
{
    struct reader *r = p;
    int prev = -1;
    for (;;) {
        int st = curfew_worker_state(r->w);
        CHECK(st >= CURFEW_WORKER_PENDING && st <= CURFEW_WORKER_DEAD);
        if (prev < 0)
            r->first = st;
        if (st < prev)
            r->backwards++;
        atomic_fetch_or(&r->seen, 1u << st);
        prev = st;
        r->samples++;
        if (st == CURFEW_WORKER_DEAD)
            break;
        sched_yield(); /* more readers than CPUs must not starve it */
    }
    r->last = prev;
    return NULL;
}

/* Each step of the walk holds the worker in one state for a while and
 * notes the state it sees from inside. */
struct walk {
    int in_task, in_closing_task, in_queued_task, in_weak, in_killing;
    curfew_worker_ref *strong;
    atomic_int weak_told, killed;
    atomic_int posted; /* the test thread posted every task */
    int close_rc, post_rc;
};

/* The readers of wk_states_forward_any_thread. A step holds the worker in
 * its state until every reader has seen that state (a fixed pause is not
 * enough: on a loaded machine a reader can stay off the CPU for longer),
 * for at most DWELL_LIMIT_MS; a reader that still has not seen it then
 * fails the test. */
#define DWELL_LIMIT_MS 10000
static struct reader *walk_readers;

static void dwell(curfew_worker *w)
{
    int st = curfew_worker_state(w);
    int64_t end = th_now_ms() + DWELL_LIMIT_MS;
    for (int i = 0; walk_readers && i < NREADERS; i++)
        while (!(atomic_load(&walk_readers[i].seen) & (1u << st)) &&
               th_now_ms() < end)
            th_sleep_ms(1);
}

static void queued_task(curfew_worker *w, void *arg)
{
    struct walk *k = arg;
    k->in_queued_task = curfew_worker_state(w);
    dwell(w);
}

static void slow_task(curfew_worker *w, void *arg)
{
    struct walk *k = arg;
    k->in_task = curfew_worker_state(w);
    /* The next task closes the worker: not before the test thread posted
     * the one after it. */
    int64_t end = th_now_ms() + DWELL_LIMIT_MS;
    while (!atomic_load(&k->posted) && th_now_ms() < end)
        th_sleep_ms(1);
    dwell(w);
}

static void closing_task(curfew_worker *w, void *arg)
{
    struct walk *k = arg;
    k->close_rc = curfew_worker_close(w);
    k->in_closing_task = curfew_worker_state(w);
    /* K3: closed: no new task, from its own thread either. */
    k->post_rc =
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, queued_task, k);
    dwell(w);
}

static void walk_weak(curfew_worker_ref *ref, void *arg)
{
    struct walk *k = arg;
    k->in_weak = curfew_worker_state(curfew_worker_ref_worker(ref));
    atomic_store(&k->weak_told, 1);
    dwell(curfew_worker_ref_worker(ref));
}

static void walk_killing(curfew_worker *w, void *arg)
{
    struct walk *k = arg;
    k->in_killing = curfew_worker_state(w);
    dwell(w);
    atomic_store(&k->killed, 1);
}

TEST(wk_states_forward_any_thread)
{
    /* K1: readers on other threads sample curfew_worker_state() in a tight
     * loop while the worker walks RUNNING -> CLOSING -> CANCELING ->
     * KILLING -> DEAD, pausing in each; no sample ever goes back, and
     * each state is seen. */
    struct walk k;
    memset(&k, 0, sizeof(k));
    curfew_worker *w = start_plain("walker", walk_killing, &k);
    static struct reader rd[NREADERS];
    for (int i = 0; i < NREADERS; i++) {
        memset(&rd[i], 0, sizeof(rd[i]));
        rd[i].w = w;
        CHECK_EQ(pthread_create(&rd[i].th, NULL, reader_main, &rd[i]), 0);
    }
    walk_readers = rd;
    curfew_worker_ref *weak;
    CHECK_EQ(curfew_worker_ref_weak(w, "walk-weak", walk_weak, &k, &weak), 0);
    CHECK_EQ(curfew_worker_ref_strong(w, "walk-strong", &k.strong), 0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, slow_task, &k),
             0);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, closing_task, &k), 0);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, queued_task, &k),
        0);
    atomic_store(&k.posted, 1);
    /* The worker goes on to CANCELING by itself once the queue is empty;
     * the strong reference holds it there (K2). */
    wk_wait_flag(&k.weak_told, 1, 5000);
    dwell(w);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    CHECK_EQ(curfew_worker_ref_release(k.strong), 0);
    for (int i = 0; i < NREADERS; i++)
        CHECK_EQ(pthread_join(rd[i].th, NULL), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);

    for (int i = 0; i < NREADERS; i++) {
        CHECK_EQ(rd[i].backwards, 0); /* K1 */
        CHECK_EQ(rd[i].last, CURFEW_WORKER_DEAD);
        CHECK(rd[i].first <= CURFEW_WORKER_RUNNING);
        for (int st = CURFEW_WORKER_RUNNING; st <= CURFEW_WORKER_DEAD; st++)
            if (!(atomic_load(&rd[i].seen) & (1u << st)))
                th_fail(__FILE__, __LINE__, "reader %d never saw state %d", i,
                        st);
    }
    /* From inside, each step saw the state it belongs to. */
    CHECK_EQ(k.in_task, CURFEW_WORKER_RUNNING);
    CHECK_EQ(k.close_rc, 0);
    CHECK_EQ(k.in_closing_task, CURFEW_WORKER_CLOSING);
    CHECK_EQ(k.post_rc, -ESHUTDOWN);
    CHECK_EQ(k.in_queued_task, CURFEW_WORKER_CLOSING);
    CHECK_EQ(k.in_weak, CURFEW_WORKER_CANCELING);
    CHECK_EQ(k.in_killing, CURFEW_WORKER_KILLING);
    CHECK_EQ(atomic_load(&k.killed), 1);
    /* No way back: every transition call is refused now. */
    CHECK_EQ(curfew_worker_close(w), -EALREADY);
    CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_DEAD);
    CHECK_EQ(curfew_worker_ref_release(weak), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
}

/* Close (from a task) and cancel (from another thread) race; readers
 * check that the state never goes back whichever wins. */
struct race {
    wk_gate go;
    int close_rc;
};

static void racing_close(curfew_worker *w, void *arg)
{
    struct race *r = arg;
    wk_gate_wait(&r->go);
    r->close_rc = curfew_worker_close(w);
}

static void noop_task(curfew_worker *w, void *arg)
{
    (void)w;
    (void)arg;
}

TEST(wk_states_forward_close_cancel_race)
{
    /* K1: many rounds of curfew_worker_close() from a task racing
     * curfew_worker_cancel() from the test thread. */
    uint32_t rng = wk_seed("wk_states_forward_close_cancel_race");
    int rounds = wk_tsan() ? 40 : 150;
    int closes_won = 0, cancels_won = 0;
    for (int round = 0; round < rounds; round++) {
        struct race rc;
        memset(&rc, 0, sizeof(rc));
        wk_gate_init(&rc.go);
        curfew_worker *w = start_plain("racer", NULL, NULL);
        struct reader rd;
        memset(&rd, 0, sizeof(rd));
        rd.w = w;
        CHECK_EQ(pthread_create(&rd.th, NULL, reader_main, &rd), 0);
        CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, racing_close,
                                    &rc),
                 0);
        for (int i = 0; i < 5; i++)
            CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN,
                                        noop_task, NULL),
                     0);
        wk_gate_open(&rc.go);
        wk_sleep_us(wk_rand(&rng) % 200);
        int cancel_rc = curfew_worker_cancel(w);
        CHECK(cancel_rc == 0 || cancel_rc == -EALREADY);
        CHECK_EQ(pthread_join(rd.th, NULL), 0);
        CHECK_EQ(curfew_worker_join(w, 5000), 0);
        CHECK(rc.close_rc == 0 || rc.close_rc == -EALREADY);
        /* Cancel is refused only when the worker had already gone on to
         * CANCELING, which needs a close first. */
        if (cancel_rc == -EALREADY)
            CHECK_EQ(rc.close_rc, 0);
        closes_won += rc.close_rc == 0;
        cancels_won += rc.close_rc == -EALREADY;
        CHECK_EQ(rd.backwards, 0); /* K1 */
        CHECK_EQ(rd.last, CURFEW_WORKER_DEAD);
        curfew_worker_stats st;
        CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
        CHECK_EQ(st.tasks_run, 6); /* all BLOCK_SHUTDOWN: all ran */
        CHECK_EQ(curfew_worker_free(w), 0);
        wk_gate_destroy(&rc.go);
    }
    fprintf(stderr, "close first %d, cancel first %d\n", closes_won,
            cancels_won);
}

/* ---- a worker that closes itself, one cancelled by a shutdown ---------- */

struct selfclose {
    int order[8];
    int n;
    int state_at[8];
    atomic_int killed;
    int killing_state;
};

static void note(struct selfclose *s, curfew_worker *w, int id)
{
    s->state_at[s->n] = curfew_worker_state(w);
    s->order[s->n++] = id;
}

static void sc_task1(curfew_worker *w, void *arg)
{
    note(arg, w, 1);
}

static void sc_task_close(curfew_worker *w, void *arg)
{
    note(arg, w, 2);
    CHECK_EQ(curfew_worker_close(w), 0);
    CHECK_EQ(curfew_worker_close(w), -EALREADY);
}

static void sc_task3(curfew_worker *w, void *arg)
{
    note(arg, w, 3);
}

static void sc_task4(curfew_worker *w, void *arg)
{
    note(arg, w, 4);
}

static void sc_killing(curfew_worker *w, void *arg)
{
    struct selfclose *s = arg;
    s->killing_state = curfew_worker_state(w);
    atomic_fetch_add(&s->killed, 1);
}

TEST(wk_close_self)
{
    /* K1, K3: a task closes its own worker: CLOSING, no new task, the
     * queued tasks (skippable ones too: nobody cancelled) still run in
     * order; then CANCELING, KILLING (on_killing) and DEAD without anyone
     * calling curfew_worker_cancel(). */
    struct selfclose s;
    memset(&s, 0, sizeof(s));
    wk_hold hold;
    wk_hold_init(&hold);
    curfew_worker *w = start_plain("self-closer", sc_killing, &s);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task, &hold),
        0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, sc_task1, &s),
             0);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, sc_task_close, &s),
        0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, sc_task3, &s),
             0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, sc_task4, &s),
             0);
    wk_hold_wait_entered(&hold, 5000);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_RUNNING);
    wk_gate_open(&hold.gate);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_DEAD);
    CHECK_EQ(s.n, 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(s.order[i], i + 1);
    CHECK_EQ(s.state_at[0], CURFEW_WORKER_RUNNING);
    CHECK_EQ(s.state_at[1], CURFEW_WORKER_RUNNING); /* before its close */
    CHECK_EQ(s.state_at[2], CURFEW_WORKER_CLOSING);
    CHECK_EQ(s.state_at[3], CURFEW_WORKER_CLOSING);
    CHECK_EQ(atomic_load(&s.killed), 1);
    CHECK_EQ(s.killing_state, CURFEW_WORKER_KILLING);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.tasks_run, 5);
    CHECK_EQ(st.tasks_skipped, 0);
    /* Posting, closing and cancelling after the end. */
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, sc_task1, &s),
             -ESHUTDOWN);
    CHECK_EQ(curfew_worker_close(w), -EALREADY);
    CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
    CHECK_EQ(curfew_worker_free(w), 0);
    wk_hold_destroy(&hold);
}

TEST(wk_close_from_outside)
{
    /* K1: curfew_worker_close() from another thread while a task runs:
     * the running and queued tasks finish, then the worker ends. A second
     * close and a cancel once it is past CANCELING say -EALREADY. */
    struct selfclose s;
    memset(&s, 0, sizeof(s));
    wk_hold hold;
    wk_hold_init(&hold);
    curfew_worker *w = start_plain("closed", sc_killing, &s);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task, &hold),
        0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, sc_task1, &s),
             0);
    wk_hold_wait_entered(&hold, 5000);
    CHECK_EQ(curfew_worker_close(w), 0);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CLOSING);
    CHECK_EQ(curfew_worker_close(w), -EALREADY);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, sc_task3, &s),
             -ESHUTDOWN);
    /* Still CLOSING while the held task runs: the queue is not empty. */
    th_sleep_ms(20);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CLOSING);
    wk_gate_open(&hold.gate);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(s.n, 1);
    CHECK_EQ(s.order[0], 1);
    CHECK_EQ(s.state_at[0], CURFEW_WORKER_CLOSING);
    CHECK_EQ(atomic_load(&s.killed), 1);
    CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
    CHECK_EQ(curfew_worker_free(w), 0);
    wk_hold_destroy(&hold);
}

/* A worker attached to a phase is cancelled by the phase's trigger. */
struct by_phase {
    curfew *cf;
    atomic_int killed;
    int in_phase; /* curfew_in_or_beyond(cf, "threads") in on_killing */
    int next_phase;
};

static void bp_killing(curfew_worker *w, void *arg)
{
    struct by_phase *b = arg;
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_KILLING);
    b->in_phase = curfew_in_or_beyond(b->cf, "threads");
    b->next_phase = curfew_in_or_beyond(b->cf, "final");
    atomic_fetch_add(&b->killed, 1);
}

TEST(wk_cancelled_by_shutdown)
{
    /* K1, K4: a worker attached to a phase (NULL: "threads") stays
     * RUNNING until that phase begins; its trigger cancels it, and the
     * phase ends after on_killing, with the worker DEAD. */
    struct by_phase b;
    memset(&b, 0, sizeof(b));
    CHECK_EQ(curfew_create(&b.cf, NULL), 0);
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = "cancelled";
    wc.cf = b.cf; /* phase NULL: "threads" */
    wc.on_killing = bp_killing;
    wc.arg = &b;
    curfew_worker *w;
    CHECK_EQ(curfew_worker_start(&wc, &w), 0);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, noop_task, NULL),
             0);
    CHECK_EQ(curfew_begin(b.cf), 0);
    /* Run the phases before "threads": the worker keeps running. */
    int64_t end = th_now_ms() + 5000;
    while (curfew_in_or_beyond(b.cf, "threads") != 1) {
        CHECK(th_now_ms() < end);
        CHECK(curfew_worker_state(w) <= CURFEW_WORKER_RUNNING);
        CHECK(curfew_worker_post(w, CURFEW_TASK_SKIP_ON_SHUTDOWN, noop_task,
                                 NULL) == 0);
        wk_drive_for(b.cf, 1);
    }
    wk_drive(b.cf, 5000);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_DEAD);
    CHECK_EQ(atomic_load(&b.killed), 1);
    CHECK_EQ(b.in_phase, 1);
    CHECK_EQ(b.next_phase, 0); /* "final" had not begun */
    CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
    CHECK_EQ(curfew_destroy(b.cf), 0);
}

/* ---- join and free ------------------------------------------------------ */

struct selfjoin {
    int join_rc, join0_rc, free_rc, killing_join_rc, killing_free_rc;
    atomic_int task_done;
};

static void join_self_task(curfew_worker *w, void *arg)
{
    struct selfjoin *s = arg;
    s->join_rc = curfew_worker_join(w, CURFEW_NEVER);
    s->join0_rc = curfew_worker_join(w, 0);
    s->free_rc = curfew_worker_free(w);
    atomic_store(&s->task_done, 1);
}

static void join_self_killing(curfew_worker *w, void *arg)
{
    struct selfjoin *s = arg;
    s->killing_join_rc = curfew_worker_join(w, 100);
    s->killing_free_rc = curfew_worker_free(w);
}

TEST(wk_join_timeout_and_deadlock)
{
    /* K2: while a strong reference is held the worker cannot die, so a
     * join with a timeout says -ETIMEDOUT after about that time; joining
     * on the worker's own thread (a task, on_killing) says -EDEADLK instead
     * of hanging; freeing before DEAD says -EBUSY. */
    struct selfjoin s;
    memset(&s, 0, sizeof(s));
    curfew_worker *w = start_plain("joined", join_self_killing, &s);
    curfew_worker_ref *ref;
    CHECK_EQ(curfew_worker_ref_strong(w, "holder", &ref), 0);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, join_self_task, &s),
        0);
    CHECK_EQ(curfew_worker_join(w, 0), -ETIMEDOUT);
    CHECK_EQ(curfew_worker_cancel(w), 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_worker_join(w, 150), -ETIMEDOUT);
    int64_t took = th_now_ms() - t0;
    CHECK(took >= 140);
    CHECK(took < 2000);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    CHECK_EQ(curfew_worker_free(w), -EBUSY);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    wk_wait_flag(&s.task_done, 1, 5000);
    CHECK_EQ(s.join_rc, -EDEADLK);
    CHECK_EQ(s.join0_rc, -EDEADLK);
    CHECK_EQ(s.free_rc, -EBUSY);
    CHECK_EQ(curfew_worker_ref_release(ref), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(curfew_worker_join(w, 0), 0); /* again: still 0 */
    CHECK_EQ(s.killing_join_rc, -EDEADLK);
    CHECK_EQ(s.killing_free_rc, -EBUSY);
    CHECK_EQ(curfew_worker_free(w), 0);
}

struct joiner {
    curfew_worker *w;
    pthread_t th;
    int rc;
};

static void *joiner_main(void *p)
{
    struct joiner *j = p;
    j->rc = curfew_worker_join(j->w, CURFEW_NEVER);
    return NULL;
}

TEST(wk_join_many_threads)
{
    /* K1: several threads join the same worker; all return 0 once it is
     * DEAD, and the thread is joined once (free then succeeds). */
    wk_hold hold;
    wk_hold_init(&hold);
    curfew_worker *w = start_plain("multi-joined", NULL, NULL);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task, &hold),
        0);
    struct joiner j[4];
    for (int i = 0; i < 4; i++) {
        j[i].w = w;
        j[i].rc = 1;
        CHECK_EQ(pthread_create(&j[i].th, NULL, joiner_main, &j[i]), 0);
    }
    CHECK_EQ(curfew_worker_cancel(w), 0);
    th_sleep_ms(20);
    wk_gate_open(&hold.gate);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(pthread_join(j[i].th, NULL), 0);
        CHECK_EQ(j[i].rc, 0);
    }
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_DEAD);
    CHECK_EQ(curfew_worker_free(w), 0);
    wk_hold_destroy(&hold);
}

static void weak_ignore(curfew_worker_ref *ref, void *arg)
{
    (void)ref;
    (void)arg;
}

TEST(wk_free_busy)
{
    /* K2: free before DEAD is -EBUSY and frees nothing; free of a DEAD
     * worker whose weak reference was not released is -EBUSY too, until
     * the reference is released. */
    wk_hold hold;
    wk_hold_init(&hold);
    curfew_worker *w = start_plain("freed", NULL, NULL);
    CHECK_EQ(curfew_worker_free(w), -EBUSY); /* RUNNING */
    curfew_worker_ref *weak;
    CHECK_EQ(
        curfew_worker_ref_weak(w, "late-releaser", weak_ignore, NULL, &weak),
        0);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task, &hold),
        0);
    wk_hold_wait_entered(&hold, 5000);
    CHECK_EQ(curfew_worker_cancel(w), 0);
    CHECK_EQ(curfew_worker_free(w), -EBUSY); /* CANCELING, task running */
    wk_gate_open(&hold.gate);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_DEAD);
    /* A weak reference does not hold the worker (K2) ... */
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.weak_refs, 1);
    /* ... but its memory: the reference points at the worker. */
    CHECK_EQ(curfew_worker_free(w), -EBUSY);
    CHECK_EQ(curfew_worker_free(w), -EBUSY);
    CHECK(curfew_worker_ref_worker(weak) == w);
    CHECK_EQ(curfew_worker_ref_release(weak), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
    wk_hold_destroy(&hold);
}

/* ---- bad arguments ------------------------------------------------------ */

TEST(wk_bad_arguments)
{
    /* Conventions: bad input gives -EINVAL, never a crash. */
    curfew_worker *w = (curfew_worker *)1;
    CHECK_EQ(curfew_worker_start(NULL, &w), -EINVAL);
    CHECK(w == NULL); /* cleared on failure */
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    CHECK_EQ(curfew_worker_start(&wc, NULL), -EINVAL);
    CHECK_EQ(
        curfew_worker_post(NULL, CURFEW_TASK_BLOCK_SHUTDOWN, noop_task, NULL),
        -EINVAL);
    CHECK_EQ(curfew_worker_close(NULL), -EINVAL);
    CHECK_EQ(curfew_worker_cancel(NULL), -EINVAL);
    CHECK_EQ(curfew_worker_state(NULL), -EINVAL);
    CHECK_EQ(curfew_worker_join(NULL, 0), -EINVAL);
    CHECK_EQ(curfew_worker_free(NULL), -EINVAL);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(NULL, &st), -EINVAL);
    curfew_worker_ref *ref = (curfew_worker_ref *)1;
    CHECK_EQ(curfew_worker_ref_strong(NULL, "x", &ref), -EINVAL);
    CHECK(ref == NULL);
    CHECK_EQ(curfew_worker_ref_weak(NULL, "x", NULL, NULL, &ref), -EINVAL);
    CHECK_EQ(curfew_worker_ref_release(NULL), -EINVAL);
    CHECK(curfew_worker_ref_worker(NULL) == NULL);
    char buf[8];
    CHECK_EQ(curfew_worker_describe_refs(NULL, buf, sizeof(buf)), -EINVAL);

    /* A worker with the defaults: named "worker", no phase. */
    w = NULL;
    CHECK_EQ(curfew_worker_start(&wc, &w), 0);
    CHECK(w != NULL);
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, NULL, NULL),
             -EINVAL);
    CHECK_EQ(curfew_worker_post(w, (curfew_task_behavior)2, noop_task, NULL),
             -EINVAL);
    CHECK_EQ(curfew_worker_post(w, (curfew_task_behavior)-1, noop_task, NULL),
             -EINVAL);
    CHECK_EQ(curfew_worker_stats_get(w, NULL), -EINVAL);
    CHECK_EQ(curfew_worker_join(w, -2), -EINVAL);
    CHECK_EQ(curfew_worker_ref_strong(w, NULL, &ref), -EINVAL);
    CHECK_EQ(curfew_worker_ref_strong(w, "x", NULL), -EINVAL);
    CHECK_EQ(curfew_worker_ref_weak(w, NULL, NULL, NULL, &ref), -EINVAL);
    CHECK_EQ(curfew_worker_ref_weak(w, "x", NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.strong_refs, 0);
    CHECK_EQ(st.weak_refs, 0);
    CHECK_EQ(curfew_worker_cancel(w), 0);
    CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
    CHECK_EQ(curfew_worker_join(w, CURFEW_NEVER), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
}

TEST(wk_start_attached_errors)
{
    /* K4: attaching to an unknown phase is -EINVAL; to a phase that has
     * completed, -ESHUTDOWN (B5: the failed add is remembered). */
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = "late";
    wc.cf = cf;
    wc.phase = "no-such-phase";
    curfew_worker *w = (curfew_worker *)1;
    CHECK_EQ(curfew_worker_start(&wc, &w), -EINVAL);
    CHECK(w == NULL);
    CHECK_EQ(curfew_begin(cf), 0);
    wk_drive(cf, 5000);
    wc.phase = "drain";
    CHECK_EQ(curfew_worker_start(&wc, &w), -ESHUTDOWN);
    CHECK(w == NULL);
    curfew_broken_registration br[4];
    int n = curfew_broken_registrations(cf, br, 4);
    CHECK(n >= 1);
    CHECK_STR(br[n - 1].name, "late");
    CHECK_EQ(br[n - 1].error, -ESHUTDOWN);
    CHECK_EQ(curfew_destroy(cf), 0);
}
