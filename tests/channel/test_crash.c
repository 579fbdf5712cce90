/* A peer that crashes (CONTRACT.md A2, A6): a child process runs a
 * scripted exchange that passes every step of every handshake, with the
 * test hook curfew__channel_crash_step set so it kills itself (SIGKILL)
 * right after one of them; and a child killed from outside at random
 * moments of a random workload. The parent's side must run every
 * on_destroy exactly once, ABNORMAL unless that actor had already
 * finished normally, report an error to on_close, never hang, and reap
 * the child.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ch_util.h"
#include "channel/channel_internal.h"
#include "harness.h"

#include <curfew/channel.h>
#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the scripted exchange ---------------------------------------------
 *
 *  child                                 parent
 *  create channel          hello-sent
 *  (parent's HELLO)        hello-received
 *  create C1, DATA on C1   create-sent, msg-sent
 *                                        creates P1, DATA on P1 and C1
 *  (Create P1, DATA)       create-received, msg-received
 *  destroy C1              destroy-sent
 *                                        answers Delete(C1)
 *  (Delete C1)             delete-received
 *  "C1 gone" on P1
 *                                        destroys P1
 *  (Destroy P1)            destroy-received
 *  answers Delete(P1)      delete-sent
 *  create C2, DATA on C2
 *                                        creates P2, DATA on P2
 *  mode c: close           willclose-sent
 *                                        Deletes, ACK
 *  (ACK)                   willclose-ack-received
 *  mode p: "ready" on C2
 *                                        close: Destroys, WillClose
 *  (WillClose)             willclose-received
 *  Deletes, ACK            willclose-ack-sent
 */

#define M_DATA 1u
#define M_C1GONE 2u
#define M_READY 3u
enum { K_C1 = 1, K_P1 = 2, K_C2 = 3, K_P2 = 4 };

typedef struct sc_actor {
    curfew_actor *a;
    int known;
    int msgs;
    int destroyed;
    int reason;
    int order;
} sc_actor;

typedef struct sc_end {
    curfew_channel *ch;
    int is_parent;
    sc_actor act[5]; /* by kind */
    int closes, err, order;
} sc_end;

static sc_end the_end; /* one per process */
static const curfew_actor_ops sc_ops;

static void sc_send(sc_actor *x, uint32_t type)
{
    CHECK_EQ(curfew_actor_send(x->a, type, "ok", 2), 0);
}

static int sc_create(sc_end *e, int kind)
{
    sc_actor *x = &e->act[kind];
    int r = curfew_actor_create(e->ch, NULL, (uint32_t)kind, NULL, 0, &sc_ops,
                                x, &x->a);
    if (r == 0)
        x->known = 1;
    return r;
}

static void sc_message(curfew_actor *a, uint32_t type, const void *data,
                       size_t len, void *arg)
{
    sc_actor *x = arg;
    sc_end *e = &the_end;
    (void)data;
    (void)len;
    CHECK(x->a == a);
    x->msgs++;
    int kind = (int)curfew_actor_kind(a);
    if (!e->is_parent)
        return; /* the child's script runs from its loop */
    if (kind == K_C1 && type == M_DATA && !e->act[K_P1].known) {
        /* parent: answer the child's first message with P1 */
        CHECK_EQ(sc_create(e, K_P1), 0);
        sc_send(&e->act[K_P1], M_DATA);
        sc_send(x, M_DATA);
    } else if (kind == K_P1 && type == M_C1GONE) {
        CHECK_EQ(curfew_actor_destroy(a), 0);
    } else if (kind == K_C2 && type == M_DATA && !e->act[K_P2].known) {
        CHECK_EQ(sc_create(e, K_P2), 0);
        sc_send(&e->act[K_P2], M_DATA);
    } else if (kind == K_C2 && type == M_READY) {
        CHECK_EQ(curfew_channel_close(e->ch), 0);
    }
}

static void sc_destroyed(curfew_actor *a, curfew_destroy_reason reason,
                         void *arg)
{
    sc_actor *x = arg;
    CHECK(x->a == a);
    x->destroyed++;
    x->reason = (int)reason;
    x->order = ++the_end.order;
    x->a = NULL;
}

/* No on_destroy_request: Delete goes at once. */
static const curfew_actor_ops sc_ops = {.on_message = sc_message,
                                        .on_destroy = sc_destroyed};

static int sc_created(curfew_channel *ch, curfew_actor *a,
                      curfew_actor *manager, uint32_t kind, const void *data,
                      size_t len, void *arg)
{
    sc_end *e = arg;
    (void)ch;
    (void)data;
    (void)len;
    CHECK(manager == NULL);
    CHECK(kind >= K_C1 && kind <= K_P2);
    sc_actor *x = &e->act[kind];
    CHECK(!x->known);
    x->known = 1;
    x->a = a;
    return curfew_actor_set_ops(a, &sc_ops, x);
}

static void sc_closed(curfew_channel *ch, int err, void *arg)
{
    sc_end *e = arg;
    (void)ch;
    e->closes++;
    e->err = err;
}

static void sc_open(sc_end *e, int fd, curfew_channel_side side)
{
    curfew_channel_config cfg = {.side = side,
                                 .close_timeout_ms = 3000,
                                 .on_actor_created = sc_created,
                                 .on_close = sc_closed,
                                 .arg = e};
    CHECK_EQ(curfew_channel_create(fd, &cfg, &e->ch), 0);
}

static void sc_poll(sc_end *e)
{
    int t = curfew_channel_timeout_ms(e->ch);
    if (t < 0 || t > 20)
        t = 20;
    struct pollfd p = {.fd = curfew_channel_fd(e->ch),
                       .events = (short)curfew_channel_events(e->ch)};
    (void)poll(&p, 1, t);
}

CHILD(crash_peer)
{
    CHECK_EQ(argc, 3);
    int fd = atoi(argv[0]);
    const char *step = argv[1];
    int child_closes = argv[2][0] == 'c';
    if (strcmp(step, "none") != 0)
        curfew__channel_crash_step = step;
    sc_end *e = &the_end;
    sc_open(e, fd, CURFEW_SIDE_CHILD);
    int stage = 0;
    int64_t deadline = th_now_ms() + 10000;
    for (;;) {
        int r = curfew_channel_dispatch(e->ch);
        if (r == 1)
            break;
        CHECK_EQ(r, 0);
        CHECK(th_now_ms() < deadline);
        curfew_channel_stats st;
        CHECK_EQ(curfew_channel_stats_get(e->ch, &st), 0);
        if (stage == 0 && st.frames_in >= 1) { /* the parent's HELLO */
            CHECK_EQ(sc_create(e, K_C1), 0);
            sc_send(&e->act[K_C1], M_DATA);
            stage = 1;
        } else if (stage == 1 && e->act[K_P1].msgs >= 1) {
            CHECK_EQ(curfew_actor_destroy(e->act[K_C1].a), 0);
            stage = 2;
        } else if (stage == 2 && e->act[K_C1].destroyed) {
            sc_send(&e->act[K_P1], M_C1GONE);
            stage = 3;
        } else if (stage == 3 && e->act[K_P1].destroyed) {
            CHECK_EQ(sc_create(e, K_C2), 0);
            sc_send(&e->act[K_C2], M_DATA);
            stage = 4;
        } else if (stage == 4 && e->act[K_P2].msgs >= 1) {
            if (child_closes)
                CHECK_EQ(curfew_channel_close(e->ch), 0);
            else
                sc_send(&e->act[K_C2], M_READY);
            stage = 5;
        } else {
            sc_poll(e);
        }
    }
    /* Without a crash the whole script ran and ended cleanly. */
    CHECK_EQ(stage, 5);
    CHECK_EQ(e->closes, 1);
    CHECK_EQ(e->err, 0);
    CHECK_EQ(e->act[K_C1].reason, CURFEW_DESTROY_DELETED);
    CHECK_EQ(e->act[K_P1].reason, CURFEW_DESTROY_DELETED);
    CHECK_EQ(e->act[K_C2].reason, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(e->act[K_P2].reason, CURFEW_DESTROY_NORMAL_CLOSE);
    curfew_channel_free(e->ch);
    return 0;
}

/* What the parent must see: for C1, P1, C2, P2 in turn. */
enum { X_ABSENT, X_ABNORMAL, X_DELETED, X_CLOSE, X_CLOSE_OR_ABNORMAL };
enum { C_ERROR, C_ZERO, C_ANY };

struct crash_case {
    const char *step;
    char mode; /* 'c': the child closes, 'p': the parent closes */
    int expect[4];
    int close;
};

static const struct crash_case crash_cases[] = {
    {"hello-sent", 'c', {X_ABSENT, X_ABSENT, X_ABSENT, X_ABSENT}, C_ERROR},
    {"hello-received", 'c', {X_ABSENT, X_ABSENT, X_ABSENT, X_ABSENT}, C_ERROR},
    {"create-sent", 'c', {X_ABNORMAL, X_ABSENT, X_ABSENT, X_ABSENT}, C_ERROR},
    {"msg-sent", 'c', {X_ABNORMAL, X_ABNORMAL, X_ABSENT, X_ABSENT}, C_ERROR},
    {"create-received",
     'c',
     {X_ABNORMAL, X_ABNORMAL, X_ABSENT, X_ABSENT},
     C_ERROR},
    {"msg-received",
     'c',
     {X_ABNORMAL, X_ABNORMAL, X_ABSENT, X_ABSENT},
     C_ERROR},
    /* The child's Destroy(C1) is in the parent's socket: the parent
     * answers it (DELETED) even when its own earlier write already met the
     * dead child (see ch_crash_last_words_delivered). */
    {"destroy-sent", 'c', {X_DELETED, X_ABNORMAL, X_ABSENT, X_ABSENT}, C_ERROR},
    {"delete-received",
     'c',
     {X_DELETED, X_ABNORMAL, X_ABSENT, X_ABSENT},
     C_ERROR},
    {"destroy-received",
     'c',
     {X_DELETED, X_ABNORMAL, X_ABSENT, X_ABSENT},
     C_ERROR},
    {"delete-sent", 'c', {X_DELETED, X_DELETED, X_ABSENT, X_ABSENT}, C_ERROR},
    /* The child's Destroys and WillClose are out: the parent answers
     * them all (NORMAL_CLOSE); whether its ACK still reaches the child
     * (on_close(0)) or meets it dead (an error) depends on when the kernel
     * sees it die. */
    {"willclose-sent", 'c', {X_DELETED, X_DELETED, X_CLOSE, X_CLOSE}, C_ANY},
    /* The parent answered and finished before the child died. */
    {"willclose-ack-received",
     'c',
     {X_DELETED, X_DELETED, X_CLOSE, X_CLOSE},
     C_ZERO},
    /* The child answered every Destroy before it read WillClose. */
    {"willclose-received",
     'p',
     {X_DELETED, X_DELETED, X_CLOSE, X_CLOSE},
     C_ERROR},
    /* The ACK is out: the parent's handshake completed. */
    {"willclose-ack-sent",
     'p',
     {X_DELETED, X_DELETED, X_CLOSE, X_CLOSE},
     C_ZERO},
    {"none", 'c', {X_DELETED, X_DELETED, X_CLOSE, X_CLOSE}, C_ZERO},
    {"none", 'p', {X_DELETED, X_DELETED, X_CLOSE, X_CLOSE}, C_ZERO},
};

static void run_crash_case(const char *step, char mode)
{
    const struct crash_case *cc = NULL;
    for (size_t i = 0; i < sizeof crash_cases / sizeof crash_cases[0]; i++)
        if (strcmp(crash_cases[i].step, step) == 0 &&
            crash_cases[i].mode == mode)
            cc = &crash_cases[i];
    CHECK(cc != NULL);
    int sv[2];
    ch_socketpair(sv);
    ch_inheritable(sv[1]);
    char s_fd[16], s_mode[2] = {mode, 0};
    snprintf(s_fd, sizeof s_fd, "%d", sv[1]);
    sc_end *e = &the_end;
    e->is_parent = 1;
    sc_open(e, sv[0], CURFEW_SIDE_PARENT);
    pid_t pid = th_spawn_child("crash_peer", s_fd, step, s_mode, NULL);
    close(sv[1]);
    int64_t t0 = th_now_ms();
    int r;
    while ((r = curfew_channel_dispatch(e->ch)) == 0) {
        if (th_now_ms() - t0 > 6000) {
            kill(pid, SIGKILL);
            (void)th_wait_child(pid, 5000);
            th_fail(__FILE__, __LINE__, "step %s: parent still open after 6 s",
                    step);
        }
        sc_poll(e);
    }
    CHECK_EQ(r, 1);
    /* The child is gone (killed at its step, or exited after a clean
     * script): reap it. */
    int st = th_wait_child(pid, 5000);
    if (strcmp(step, "none") == 0) {
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 0);
    } else {
        /* It really died at that step (the step was reached). */
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            th_fail(__FILE__, __LINE__,
                    "step %s: child was not killed at its step (status %#x)",
                    step, st);
    }
    CHECK_EQ(e->closes, 1);
    if (cc->close == C_ZERO && e->err != 0)
        th_fail(__FILE__, __LINE__, "step %s: on_close(%d), expected 0", step,
                e->err);
    if (cc->close == C_ERROR && e->err >= 0)
        th_fail(__FILE__, __LINE__, "step %s: on_close(%d), expected an error",
                step, e->err);
    if (e->err != 0 && e->err != -ECONNRESET && e->err != -EPROTO)
        th_fail(__FILE__, __LINE__, "step %s: on_close(%d)", step, e->err);
    static const int kinds[4] = {K_C1, K_P1, K_C2, K_P2};
    static const char *const names[4] = {"C1", "P1", "C2", "P2"};
    for (int i = 0; i < 4; i++) {
        sc_actor *x = &e->act[kinds[i]];
        int want = cc->expect[i];
        int ok;
        switch (want) {
        case X_ABSENT:
            ok = !x->known && !x->destroyed;
            break;
        case X_ABNORMAL:
            ok = x->known && x->destroyed == 1 &&
                 x->reason == CURFEW_DESTROY_ABNORMAL;
            break;
        case X_DELETED:
            ok = x->known && x->destroyed == 1 &&
                 x->reason == CURFEW_DESTROY_DELETED;
            break;
        case X_CLOSE:
            ok = x->known && x->destroyed == 1 &&
                 x->reason == CURFEW_DESTROY_NORMAL_CLOSE;
            break;
        default:
            ok = 0;
            break;
        }
        if (!ok)
            th_fail(__FILE__, __LINE__,
                    "step %s: %s known %d, on_destroy %d times, reason %d "
                    "(expected case %d)",
                    step, names[i], x->known, x->destroyed, x->reason, want);
        CHECK(x->a == NULL);
    }
    curfew_channel_stats s;
    CHECK_EQ(curfew_channel_stats_get(e->ch, &s), 0);
    CHECK_EQ(s.actors_live, 0);
    CHECK(th_now_ms() - t0 < 6000);
    curfew_channel_free(e->ch);
    CHECK_EQ(e->closes, 1);
}

/* A2, A6: the child dies right after the named step. */
TEST(ch_crash_hello_sent)
{
    run_crash_case("hello-sent", 'c');
}
TEST(ch_crash_hello_received)
{
    run_crash_case("hello-received", 'c');
}
TEST(ch_crash_create_sent)
{
    run_crash_case("create-sent", 'c');
}
TEST(ch_crash_create_received)
{
    run_crash_case("create-received", 'c');
}
TEST(ch_crash_msg_sent)
{
    run_crash_case("msg-sent", 'c');
}
TEST(ch_crash_msg_received)
{
    run_crash_case("msg-received", 'c');
}
TEST(ch_crash_destroy_sent)
{
    run_crash_case("destroy-sent", 'c');
}
TEST(ch_crash_destroy_received)
{
    run_crash_case("destroy-received", 'c');
}
TEST(ch_crash_delete_sent)
{
    run_crash_case("delete-sent", 'c');
}
TEST(ch_crash_delete_received)
{
    run_crash_case("delete-received", 'c');
}
TEST(ch_crash_willclose_sent)
{
    run_crash_case("willclose-sent", 'c');
}
TEST(ch_crash_willclose_received)
{
    run_crash_case("willclose-received", 'p');
}
TEST(ch_crash_willclose_ack_sent)
{
    run_crash_case("willclose-ack-sent", 'p');
}
TEST(ch_crash_willclose_ack_received)
{
    run_crash_case("willclose-ack-received", 'c');
}
TEST(ch_crash_script_without_crash)
{
    /* The control: the same scripts with no crash end cleanly on both
     * sides (either end closing), so each case above does reach its
     * step. */
    run_crash_case("none", 'c');
    memset(&the_end, 0, sizeof the_end);
    run_crash_case("none", 'p');
}

TEST(ch_crash_last_words_delivered)
{
    /* A3 ("no message is dropped"), A2; what P6 relies on: a peer sends a
     * message and dies (its socket closed). The frame is in our socket
     * buffer. Whether it reaches on_message must not depend on whether we
     * happened to write to the dead peer first: in both cases it is
     * delivered, then on_destroy(ABNORMAL), on_close(-ECONNRESET). */
    for (int we_write = 0; we_write < 2; we_write++) {
        int sv[2];
        ch_socketpair(sv);
        ch_side a;
        curfew_channel_config cfg;
        ch_side_init(&a, &cfg, CURFEW_SIDE_PARENT);
        CHECK_EQ(curfew_channel_create(sv[0], &cfg, &a.ch), 0);
        ch_rec r = {0};
        CHECK_EQ(ch_rec_create(a.ch, NULL, 1, &r), 0);
        raw_hello(sv[1]);
        unsigned char seq[4] = {0, 0, 0, 0};
        raw_frame(sv[1], FR_MSG, r.id, REC_SEQ, seq, sizeof seq);
        close(sv[1]); /* dies */
        if (we_write)
            CHECK_EQ(curfew_actor_send(r.a, 1, "ping", 4), 0);
        CHECK_EQ(ch_run_until_closed(a.ch, 3000), 1);
        CHECK_EQ(a.closes, 1);
        CHECK_EQ(a.close_err, -ECONNRESET);
        CHECK_EQ(r.destroyed, 1);
        CHECK_EQ(r.reason, CURFEW_DESTROY_ABNORMAL);
        if (r.msgs_at_destroy != 1)
            th_fail(__FILE__, __LINE__, "%s: the peer's last message was %s",
                    we_write ? "after our write met the dead peer"
                             : "without a write of ours",
                    r.msgs_at_destroy ? "delivered" : "dropped");
        curfew_channel_free(a.ch);
    }
}

/* ---- killed from outside at random moments -----------------------------
 *
 * Both ends run a random workload: actors created (top-level or under a
 * random live actor), messages both ways, Destroys from either end,
 * requests answered at once or late. The parent kills the child with
 * SIGKILL at a random moment once traffic flows. */

typedef struct cz_rec {
    struct cz *z;
    curfew_actor *a;
    struct cz_rec *mgr;
    int kids; /* managees whose on_destroy has not run yet */
    int destroyed, reason;
    int pending, pend_turns;
    int before_kill; /* on_destroy ran before the kill */
    int msgs;
} cz_rec;

typedef struct cz {
    curfew_channel *ch;
    cz_rec *recs;
    int nrecs, cap, live;
    uint64_t rng;
    int closes, err;
    int killed;
    int msgs;
} cz;

static uint32_t cz_rnd(cz *z, uint32_t n)
{
    z->rng ^= z->rng << 13;
    z->rng ^= z->rng >> 7;
    z->rng ^= z->rng << 17;
    return (uint32_t)(z->rng % n);
}

static cz_rec *cz_find(cz *z, const curfew_actor *a)
{
    for (int i = z->nrecs - 1; i >= 0; i--)
        if (z->recs[i].a == a)
            return &z->recs[i];
    return NULL;
}

static cz_rec *cz_new(cz *z, cz_rec *mgr)
{
    if (z->nrecs == z->cap)
        return NULL;
    cz_rec *r = &z->recs[z->nrecs++];
    memset(r, 0, sizeof *r);
    r->z = z;
    r->mgr = mgr;
    if (mgr)
        mgr->kids++;
    z->live++;
    return r;
}

static void cz_message(curfew_actor *a, uint32_t type, const void *data,
                       size_t len, void *arg)
{
    cz_rec *r = arg;
    (void)type;
    (void)data;
    (void)len;
    CHECK(r->a == a);
    CHECK(!r->destroyed);
    r->msgs++;
    r->z->msgs++;
}

static int cz_request(curfew_actor *a, curfew_destroy_reason reason, void *arg)
{
    cz_rec *r = arg;
    CHECK(r->a == a);
    CHECK(reason >= CURFEW_DESTROY_DELETED &&
          reason <= CURFEW_DESTROY_NORMAL_CLOSE);
    if (cz_rnd(r->z, 3) == 0)
        CHECK_EQ(curfew_actor_send(a, 9, "final", 5), 0);
    if (cz_rnd(r->z, 3) == 0) {
        r->pending = 1;
        r->pend_turns = (int)cz_rnd(r->z, 30);
        return CURFEW_PENDING;
    }
    return CURFEW_DONE;
}

static void cz_destroyed(curfew_actor *a, curfew_destroy_reason reason,
                         void *arg)
{
    cz_rec *r = arg;
    CHECK(r->a == a);
    CHECK_EQ(r->destroyed, 0); /* A2: exactly once */
    CHECK_EQ(r->kids, 0);      /* A4: managees first */
    CHECK(reason >= CURFEW_DESTROY_DELETED &&
          reason <= CURFEW_DESTROY_ABNORMAL);
    r->destroyed = 1;
    r->reason = (int)reason;
    r->before_kill = !r->z->killed;
    if (r->mgr)
        r->mgr->kids--;
    r->a = NULL;
    r->z->live--;
}

static const curfew_actor_ops cz_ops = {.on_message = cz_message,
                                        .on_destroy_request = cz_request,
                                        .on_destroy = cz_destroyed};

static int cz_created(curfew_channel *ch, curfew_actor *a,
                      curfew_actor *manager, uint32_t kind, const void *data,
                      size_t len, void *arg)
{
    cz *z = arg;
    (void)ch;
    (void)kind;
    (void)data;
    (void)len;
    cz_rec *m = NULL;
    if (manager) {
        m = cz_find(z, manager);
        CHECK(m != NULL);
    }
    cz_rec *r = cz_new(z, m);
    if (!r)
        return -ENOMEM; /* out of records: refuse (the channel fails) */
    r->a = a;
    return curfew_actor_set_ops(a, &cz_ops, r);
}

static void cz_closed(curfew_channel *ch, int err, void *arg)
{
    cz *z = arg;
    (void)ch;
    z->closes++;
    z->err = err;
}

static cz_rec *cz_pick(cz *z)
{
    if (!z->nrecs)
        return NULL;
    for (int k = 0; k < 8; k++) {
        cz_rec *r = &z->recs[cz_rnd(z, (uint32_t)z->nrecs)];
        if (r->a)
            return r;
    }
    return NULL;
}

/* One turn of random work. */
static void cz_turn(cz *z)
{
    if (curfew_channel_state(z->ch) != CURFEW_CHANNEL_OPEN)
        return;
    for (int n = 0; n < 4; n++) {
        uint32_t c = cz_rnd(z, 100);
        if (c < 15 && z->live < 150) {
            cz_rec *m = cz_rnd(z, 2) ? cz_pick(z) : NULL;
            if (m && curfew_actor_state(m->a) != CURFEW_ACTOR_ALIVE)
                m = NULL;
            cz_rec *r = cz_new(z, m);
            if (!r)
                continue;
            int rc = curfew_actor_create(z->ch, m ? m->a : NULL, 1, "k", 1,
                                         &cz_ops, r, &r->a);
            CHECK_EQ(rc, 0);
        } else if (c < 90) {
            cz_rec *r = cz_pick(z);
            if (!r)
                continue;
            int st = curfew_actor_state(r->a);
            int rc = curfew_actor_send(r->a, 1, "payload", 7);
            if (st == CURFEW_ACTOR_ALIVE || st == CURFEW_ACTOR_DELETING)
                CHECK_EQ(rc, 0);
            else
                CHECK_EQ(rc, -EPIPE);
        } else {
            cz_rec *r = cz_pick(z);
            if (r && curfew_actor_state(r->a) == CURFEW_ACTOR_ALIVE)
                CHECK_EQ(curfew_actor_destroy(r->a), 0);
        }
    }
    for (int i = 0; i < z->nrecs; i++) {
        cz_rec *r = &z->recs[i];
        if (r->a && r->pending && r->pend_turns-- <= 0) {
            r->pending = 0;
            CHECK_EQ(curfew_actor_delete(r->a), 0);
        }
    }
}

static void cz_open(cz *z, int fd, curfew_channel_side side, uint64_t seed)
{
    memset(z, 0, sizeof *z);
    z->cap = 20000;
    z->recs = calloc((size_t)z->cap, sizeof *z->recs);
    CHECK(z->recs != NULL);
    z->rng = seed | 1;
    curfew_channel_config cfg = {.side = side,
                                 .on_actor_created = cz_created,
                                 .on_close = cz_closed,
                                 .arg = z};
    CHECK_EQ(curfew_channel_create(fd, &cfg, &z->ch), 0);
}

static void cz_poll(cz *z, int ms)
{
    struct pollfd p = {.fd = curfew_channel_fd(z->ch),
                       .events = (short)curfew_channel_events(z->ch)};
    (void)poll(&p, 1, ms);
}

CHILD(chaos_peer)
{
    CHECK_EQ(argc, 2);
    cz z;
    cz_open(&z, atoi(argv[0]), CURFEW_SIDE_CHILD, strtoull(argv[1], NULL, 10));
    /* Runs until killed; bounded in case the parent never does. */
    int64_t end = th_now_ms() + 20000;
    while (th_now_ms() < end) {
        int r = curfew_channel_dispatch(z.ch);
        if (r == 1)
            break;
        cz_turn(&z);
        cz_poll(&z, 1);
    }
    curfew_channel_free(z.ch);
    free(z.recs);
    return 3; /* never reached while the parent works */
}

TEST(ch_crash_random_kill)
{
    /* A2, A6: 20 times, the child running a random workload is SIGKILLed
     * at a random moment. Every actor's on_destroy runs exactly once
     * (managees first), those that ran before the kill have a normal
     * reason, on_close reports an error, the parent never hangs and reaps
     * the child. */
    uint64_t seed = 0x5DEECE66Dull;
    int abnormal = 0, normal = 0;
    for (int it = 0; it < 20; it++) {
        int sv[2];
        ch_socketpair(sv);
        ch_inheritable(sv[1]);
        char s_fd[16], s_seed[32];
        snprintf(s_fd, sizeof s_fd, "%d", sv[1]);
        snprintf(s_seed, sizeof s_seed, "%llu",
                 (unsigned long long)(seed + (uint64_t)it * 7919u));
        cz z;
        cz_open(&z, sv[0], CURFEW_SIDE_PARENT, seed ^ (uint64_t)(it + 1));
        pid_t pid = th_spawn_child("chaos_peer", s_fd, s_seed, NULL);
        close(sv[1]);
        int64_t t0 = th_now_ms(), kill_at = -1, killed_at = 0;
        int r;
        while ((r = curfew_channel_dispatch(z.ch)) == 0) {
            int64_t now = th_now_ms();
            if (kill_at < 0 && z.nrecs >= 10 && z.msgs >= 20)
                kill_at = now + (int64_t)cz_rnd(&z, 60);
            if (!z.killed && kill_at >= 0 && now >= kill_at) {
                CHECK_EQ(kill(pid, SIGKILL), 0);
                z.killed = 1;
                killed_at = now;
            }
            if (now - t0 > 10000 || (z.killed && now - killed_at > 5000)) {
                if (!z.killed)
                    kill(pid, SIGKILL);
                (void)th_wait_child(pid, 5000);
                th_fail(__FILE__, __LINE__,
                        "iteration %d: no end (killed %d, %d actors, %d "
                        "msgs)",
                        it, z.killed, z.nrecs, z.msgs);
            }
            cz_turn(&z);
            cz_poll(&z, 1);
        }
        CHECK_EQ(r, 1);
        int st = th_wait_child(pid, 5000);
        if (!z.killed)
            th_fail(__FILE__, __LINE__,
                    "iteration %d: channel ended before the kill: "
                    "on_close(%d), child status %#x",
                    it, z.err, st);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        CHECK_EQ(z.closes, 1);
        if (z.err != -ECONNRESET && z.err != -EPROTO)
            th_fail(__FILE__, __LINE__, "iteration %d: on_close(%d)", it,
                    z.err);
        CHECK_EQ(z.live, 0);
        for (int i = 0; i < z.nrecs; i++) {
            cz_rec *x = &z.recs[i];
            CHECK_EQ(x->destroyed, 1);
            CHECK(x->a == NULL);
            CHECK_EQ(x->kids, 0);
            if (x->before_kill)
                CHECK(x->reason != CURFEW_DESTROY_ABNORMAL);
            if (x->reason == CURFEW_DESTROY_ABNORMAL)
                abnormal++;
            else
                normal++;
        }
        curfew_channel_stats s;
        CHECK_EQ(curfew_channel_stats_get(z.ch, &s), 0);
        CHECK_EQ(s.actors_live, 0);
        curfew_channel_free(z.ch);
        CHECK_EQ(z.closes, 1);
        free(z.recs);
    }
    fprintf(stderr, "random kills: %d actors ABNORMAL, %d finished before\n",
            abnormal, normal);
    CHECK(abnormal > 0);
    CHECK(normal > 0);
}
