/* Ordered operation queues: CONTRACT.md I5 (the FHR pattern of the source
 * document: db.close() goes at the end of the queue of pending database
 * operations, and the phase waits for it).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "io_util.h"

#include <errno.h>
#include <unistd.h>

#define MAXOPS 4096

/* What one queue ran, in the order it ran. Operations of one queue run one
 * at a time, so `log` needs no lock; `inflight` catches any overlap. */
struct qlog {
    atomic_int inflight;
    atomic_int overlaps;
    atomic_int n;
    int log[MAXOPS];
    atomic_int closed_after; /* ops run when the close ran; -1: not yet */
    atomic_int close_runs;
    int close_sleep_ms;
    int64_t close_end_ms;
};

struct opref {
    struct qlog *ql;
    int value;
    int sleep_ms;
};

static void qlog_init(struct qlog *ql)
{
    memset(ql, 0, sizeof(*ql));
    atomic_init(&ql->inflight, 0);
    atomic_init(&ql->overlaps, 0);
    atomic_init(&ql->n, 0);
    atomic_init(&ql->closed_after, -1);
    atomic_init(&ql->close_runs, 0);
}

static void record_op(void *arg)
{
    struct opref *o = arg;
    struct qlog *ql = o->ql;
    if (atomic_fetch_add(&ql->inflight, 1) != 0)
        atomic_fetch_add(&ql->overlaps, 1);
    if (o->sleep_ms)
        th_sleep_ms(o->sleep_ms);
    int k = atomic_load(&ql->n);
    if (k < MAXOPS)
        ql->log[k] = o->value;
    atomic_store(&ql->n, k + 1);
    atomic_fetch_sub(&ql->inflight, 1);
}

static void record_close(void *arg)
{
    struct qlog *ql = arg;
    if (atomic_fetch_add(&ql->inflight, 1) != 0)
        atomic_fetch_add(&ql->overlaps, 1);
    if (ql->close_sleep_ms)
        th_sleep_ms(ql->close_sleep_ms);
    ql->close_end_ms = th_now_ms();
    atomic_store(&ql->closed_after, atomic_load(&ql->n));
    atomic_fetch_add(&ql->close_runs, 1);
    atomic_fetch_sub(&ql->inflight, 1);
}

static void wait_closed(curfew_queue *q, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    while (curfew_queue_is_closed(q) != 1) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "the queue's close did not run");
        th_sleep_ms(1);
    }
}

static void free_queue(curfew_queue *q)
{
    int64_t end = th_now_ms() + 5000;
    int r;
    while ((r = curfew_queue_free(q)) == -EBUSY && th_now_ms() < end)
        th_sleep_ms(1);
    CHECK_EQ(r, 0);
}

/* I5: one poster, 2000 operations on a queue served by four I/O threads:
 * they run one at a time, in the order posted, and the close runs last. */
TEST(io_queue_order_single_poster)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 4);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "db", &q), 0);
    static struct qlog ql;
    qlog_init(&ql);
    static struct opref ops[2000];
    for (int i = 0; i < 2000; i++) {
        ops[i] = (struct opref){.ql = &ql, .value = i, .sleep_ms = 0};
        CHECK_EQ(curfew_queue_post(q, record_op, &ops[i]), 0);
    }
    CHECK_EQ(curfew_queue_close(q, record_close, &ql), 0);
    wait_closed(q, 20000);
    CHECK_EQ(atomic_load(&ql.n), 2000);
    CHECK_EQ(atomic_load(&ql.closed_after), 2000);
    CHECK_EQ(atomic_load(&ql.close_runs), 1);
    CHECK_EQ(atomic_load(&ql.overlaps), 0);
    for (int i = 0; i < 2000; i++)
        CHECK_EQ(ql.log[i], i);
    free_queue(q);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

struct qposter {
    pthread_t th;
    curfew_queue *q;
    struct opref *ops;
    int id, count;
};

static void *post_ops(void *arg)
{
    struct qposter *p = arg;
    for (int i = 0; i < p->count; i++) {
        if (curfew_queue_post(p->q, record_op, &p->ops[i]) != 0)
            th_fail(__FILE__, __LINE__, "post %d/%d", p->id, i);
        if (i % 64 == 0)
            usleep(100);
    }
    return NULL;
}

/* I5 under concurrent posting: four threads post 500 operations each to
 * each of two queues (four I/O threads). Each queue runs its operations
 * one at a time; every poster's operations run in the order it posted
 * them; nothing is lost or run twice; each close runs last. */
TEST(io_queue_order_concurrent)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 4);
    curfew_queue *q[2] = {NULL, NULL};
    CHECK_EQ(curfew_queue_create(io, "first", &q[0]), 0);
    CHECK_EQ(curfew_queue_create(io, "second", &q[1]), 0);
    static struct qlog ql[2];
    static struct opref ops[2][4][500];
    struct qposter ps[2][4];
    for (int k = 0; k < 2; k++) {
        qlog_init(&ql[k]);
        for (int t = 0; t < 4; t++) {
            for (int i = 0; i < 500; i++)
                ops[k][t][i] =
                    (struct opref){.ql = &ql[k], .value = t * 100000 + i};
            ps[k][t] = (struct qposter){
                .q = q[k], .ops = ops[k][t], .id = t, .count = 500};
        }
    }
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 4; t++)
            CHECK_EQ(pthread_create(&ps[k][t].th, NULL, post_ops, &ps[k][t]),
                     0);
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < 4; t++)
            pthread_join(ps[k][t].th, NULL);
    for (int k = 0; k < 2; k++)
        CHECK_EQ(curfew_queue_close(q[k], record_close, &ql[k]), 0);
    for (int k = 0; k < 2; k++) {
        wait_closed(q[k], 20000);
        CHECK_EQ(atomic_load(&ql[k].n), 2000);
        CHECK_EQ(atomic_load(&ql[k].closed_after), 2000);
        CHECK_EQ(atomic_load(&ql[k].overlaps), 0);
        int next[4] = {0, 0, 0, 0};
        for (int i = 0; i < 2000; i++) {
            int t = ql[k].log[i] / 100000, seq = ql[k].log[i] % 100000;
            CHECK(t >= 0 && t < 4);
            CHECK_EQ(seq, next[t]);
            next[t]++;
        }
        for (int t = 0; t < 4; t++)
            CHECK_EQ(next[t], 500);
        free_queue(q[k]);
    }
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- the FHR pattern ----------------------------------------------------- */

struct fhr {
    curfew_queue *q;
    struct qlog ql;
    struct opref ops[8];
    int64_t persist_end_ms;
    int post_after_close, close_again, free_early;
    int checked_closed, checked_all_ran, checked_close_ran;
};

static void on_event(const curfew_event *ev, void *arg)
{
    struct fhr *f = arg;
    if (ev->type == CURFEW_EV_PHASE_END && strcmp(ev->phase, "persist") == 0)
        f->persist_end_ms = th_now_ms();
}

/* A blocker of "drain": like FHR on quit-application, schedules the close
 * at the end of the queue of pending operations, and finishes at once. */
static int drain_trigger(curfew_blocker self, void *arg)
{
    struct fhr *f = arg;
    (void)self;
    CHECK_EQ(curfew_queue_close(f->q, record_close, &f->ql), 0);
    f->post_after_close = curfew_queue_post(f->q, record_op, &f->ops[7]);
    f->close_again = curfew_queue_close(f->q, NULL, NULL);
    f->free_early = curfew_queue_free(f->q);
    return CURFEW_DONE;
}

static int telemetry_trigger(curfew_blocker self, void *arg)
{
    struct fhr *f = arg;
    (void)self;
    f->checked_closed = curfew_queue_is_closed(f->q);
    f->checked_all_ran = atomic_load(&f->ql.n);
    f->checked_close_ran = atomic_load(&f->ql.close_runs);
    return CURFEW_DONE;
}

/* I5: operations queued before the shutdown (slow ones, 60 ms each) and
 * a close scheduled by a blocker of an earlier phase ("drain"): the queue's
 * blocker in "persist" finishes only after the close ran, which is after
 * every operation posted before it; persist ends after the close returned.
 * After the close is queued, a post is -ESHUTDOWN (never silently
 * dropped), a second close -EALREADY, and free -EBUSY until it ran. */
TEST(io_queue_close_last_in_phase)
{
    static struct fhr f;
    memset(&f, 0, sizeof(f));
    qlog_init(&f.ql);
    f.ql.close_sleep_ms = 300;
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.on_event = on_event;
    cfg.event_arg = &f;
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_io *io = io_new_io(cf, NULL, 2);
    CHECK_EQ(curfew_queue_create(io, "fhr db", &f.q), 0);
    for (int i = 0; i < 7; i++) {
        f.ops[i] = (struct opref){.ql = &f.ql, .value = i, .sleep_ms = 60};
        CHECK_EQ(curfew_queue_post(f.q, record_op, &f.ops[i]), 0);
    }
    f.ops[7] = (struct opref){.ql = &f.ql, .value = 7};
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "quit",
                                drain_trigger, &f, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "telemetry"), "check",
                                telemetry_trigger, &f, NULL),
             0);
    io_shutdown(cf, 20000);
    CHECK_EQ(f.post_after_close, -ESHUTDOWN);
    CHECK_EQ(f.close_again, -EALREADY);
    CHECK_EQ(f.free_early, -EBUSY);
    CHECK_EQ(f.checked_closed, 1);
    CHECK_EQ(f.checked_all_ran, 7);
    CHECK_EQ(f.checked_close_ran, 1);
    CHECK_EQ(atomic_load(&f.ql.closed_after), 7);
    CHECK_EQ(atomic_load(&f.ql.overlaps), 0);
    for (int i = 0; i < 7; i++)
        CHECK_EQ(f.ql.log[i], i);
    CHECK(f.persist_end_ms >= f.ql.close_end_ms);
    CHECK_EQ(curfew_queue_post(f.q, record_op, &f.ops[7]), -ESHUTDOWN);
    CHECK_EQ(atomic_load(&f.ql.n), 7);
    free_queue(f.q);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static atomic_int long_op_started, long_op_done;

static void long_op(void *arg)
{
    (void)arg;
    atomic_store(&long_op_started, 1);
    th_sleep_ms(500);
    atomic_store(&long_op_done, 1);
}

static int long_op_started_check(curfew_blocker self, void *arg)
{
    (void)self;
    *(int *)arg = atomic_load(&long_op_done);
    return CURFEW_DONE;
}

/* I5: a queue nobody closed is closed by its phase's trigger (with no
 * close function), after its operations: an operation running when the
 * phase starts is not cut in half — the phase ends after it. Afterwards
 * post is -ESHUTDOWN and close -EALREADY. */
TEST(io_queue_phase_closes_unclosed)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 2);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "unclosed", &q), 0);
    atomic_store(&long_op_done, 0);
    static struct qlog ql;
    qlog_init(&ql);
    static struct opref ops[3];
    CHECK_EQ(curfew_queue_post(q, long_op, NULL), 0);
    for (int i = 0; i < 3; i++) {
        ops[i] = (struct opref){.ql = &ql, .value = i, .sleep_ms = 20};
        CHECK_EQ(curfew_queue_post(q, record_op, &ops[i]), 0);
    }
    int seen_in_telemetry = -1;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "telemetry"), "check",
                                long_op_started_check, &seen_in_telemetry,
                                NULL),
             0);
    CHECK_EQ(curfew_queue_is_closed(q), 0);
    io_wait_flag(&long_op_started, 1, 5000);
    io_shutdown(cf, 20000);
    CHECK_EQ(seen_in_telemetry, 1);
    CHECK_EQ(atomic_load(&ql.n), 3);
    CHECK_EQ(curfew_queue_is_closed(q), 1);
    CHECK_EQ(curfew_queue_post(q, record_op, &ops[0]), -ESHUTDOWN);
    CHECK_EQ(curfew_queue_close(q, NULL, NULL), -EALREADY);
    free_queue(q);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I5 with B6: a queue closed and freed before the shutdown is gone from
 * its phase: the phase neither waits for it nor touches it (an ASan build
 * sees any use of the freed queue). */
TEST(io_queue_freed_before_shutdown)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    curfew_queue *q = NULL;
    CHECK_EQ(curfew_queue_create(io, "short-lived", &q), 0);
    static struct qlog ql;
    qlog_init(&ql);
    static struct opref op;
    op = (struct opref){.ql = &ql, .value = 1};
    CHECK_EQ(curfew_queue_post(q, record_op, &op), 0);
    CHECK_EQ(curfew_queue_free(q), -EBUSY); /* not closed */
    CHECK_EQ(curfew_queue_close(q, record_close, &ql), 0);
    wait_closed(q, 5000);
    free_queue(q);
    /* Reuse the memory the queue had, as a busy program would. */
    void *junk[16];
    for (int i = 0; i < 16; i++) {
        junk[i] = malloc(64);
        memset(junk[i], 0xA5, 64);
    }
    int64_t t0 = th_now_ms();
    io_shutdown(cf, 10000);
    CHECK(th_now_ms() - t0 < 5000);
    for (int i = 0; i < 16; i++)
        free(junk[i]);
    CHECK_EQ(atomic_load(&ql.close_runs), 1);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* I5: bad arguments are -EINVAL; a queue on an io whose phase completed
 * is -ESHUTDOWN. */
TEST(io_queue_arguments)
{
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    curfew_queue *q = (curfew_queue *)&q;
    CHECK_EQ(curfew_queue_create(NULL, "q", &q), -EINVAL);
    CHECK(q == NULL);
    CHECK_EQ(curfew_queue_create(io, NULL, &q), -EINVAL);
    CHECK_EQ(curfew_queue_create(io, "", &q), -EINVAL);
    CHECK_EQ(curfew_queue_create(io, "q", NULL), -EINVAL);
    CHECK_EQ(curfew_queue_post(NULL, record_op, NULL), -EINVAL);
    CHECK_EQ(curfew_queue_close(NULL, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_queue_is_closed(NULL), -EINVAL);
    CHECK_EQ(curfew_queue_free(NULL), -EINVAL);
    CHECK_EQ(curfew_queue_create(io, "q", &q), 0);
    CHECK_EQ(curfew_queue_post(q, NULL, NULL), -EINVAL);
    io_shutdown(cf, 10000); /* closes q */
    CHECK_EQ(curfew_queue_is_closed(q), 1);
    free_queue(q);
    curfew_queue *late = NULL;
    CHECK_EQ(curfew_queue_create(io, "late", &late), -ESHUTDOWN);
    CHECK(late == NULL);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
}
