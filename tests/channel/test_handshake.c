/* Channel handshakes driven step by step from one thread: both ends of a
 * socket pair in this process, dispatched in turn, so every interleaving
 * below is exact. CONTRACT.md A2, A3, A4, A5.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ch_util.h"
#include "harness.h"

#include <curfew/channel.h>
#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static void settle2(ch_side *a, ch_side *b)
{
    curfew_channel *both[2] = {a->ch, b->ch};
    ch_settle(both, 2);
}

static int both_closed(void *arg)
{
    ch_side **s = arg;
    return s[0]->closes && s[1]->closes;
}

static void run_to_close(ch_side *a, ch_side *b)
{
    curfew_channel *both[2] = {a->ch, b->ch};
    ch_side *sides[2] = {a, b};
    CHECK_EQ(ch_pump(both, 2, both_closed, sides, 5000), 1);
    CHECK_EQ(curfew_channel_dispatch(a->ch), 1);
    CHECK_EQ(curfew_channel_dispatch(b->ch), 1);
}

static void free_pair(ch_side *a, ch_side *b)
{
    curfew_channel_free(a->ch);
    curfew_channel_free(b->ch);
    a->ch = b->ch = NULL;
}

static void check_once(const ch_rec *r, int reason)
{
    CHECK_EQ(r->destroyed, 1);
    CHECK_EQ(r->reason, reason);
    CHECK(r->a == NULL);
    CHECK_EQ(r->state_in_destroy, CURFEW_ACTOR_DEAD);
    CHECK_EQ(r->send_in_destroy, -EPIPE);
}

/* ---- A3: Destroy, final messages, Delete -------------------------------- */

TEST(ch_destroy_pending_final_messages)
{
    /* A3: the side that got Destroy answers CURFEW_PENDING, sends its
     * final messages over several loop turns, then curfew_actor_delete();
     * every one of them reaches the destroying side before its on_destroy.
     * The destroying side can no longer send (-EPIPE). A2: on_destroy
     * exactly once on each side, DELETED. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    b.req_result = CURFEW_PENDING;
    ch_rec ax = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 7, &ax), 0);
    CHECK_EQ(ax.id & 1, 1); /* the parent side hands out odd ids */
    settle2(&a, &b);
    CHECK_EQ(b.npeer, 1);
    ch_rec *bx = &b.peer[0];
    CHECK_EQ(bx->id, ax.id);
    CHECK_EQ(b.kinds[0], 7);
    CHECK(b.managers[0] == NULL);

    for (int i = 0; i < 3; i++) {
        CHECK_EQ(ch_rec_send_seq(&ax), 0);
        CHECK_EQ(ch_rec_send_seq(bx), 0);
    }
    /* Destroy with messages in flight both ways. */
    CHECK_EQ(curfew_actor_destroy(ax.a), 0);
    CHECK_EQ(curfew_actor_state(ax.a), CURFEW_ACTOR_DESTROYING);
    CHECK_EQ(curfew_actor_destroy(ax.a), -EALREADY);
    CHECK_EQ(ch_rec_send_seq(&ax), -EPIPE); /* A3 */
    CHECK_EQ(curfew_actor_send(ax.a, 1, "x", 1), -EPIPE);
    CHECK_EQ(curfew_actor_delete(ax.a), -EINVAL); /* the peer has not asked */
    settle2(&a, &b);
    CHECK_EQ(bx->requests, 1);
    CHECK_EQ(bx->req_reason, CURFEW_DESTROY_DELETED);
    CHECK_EQ(bx->msgs, 3); /* what a sent before Destroy arrived first */
    CHECK_EQ(curfew_actor_state(bx->a), CURFEW_ACTOR_DELETING);
    CHECK_EQ(curfew_actor_destroy(bx->a), -EALREADY);
    CHECK_EQ(ax.destroyed, 0);
    CHECK_EQ(bx->destroyed, 0);

    /* Final messages, one per loop turn: the handshake waits. */
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(ch_rec_send_seq(bx), 0);
        settle2(&a, &b);
        CHECK_EQ(ax.destroyed, 0);
        CHECK_EQ(bx->destroyed, 0);
        CHECK_EQ(ax.msgs, 3 + 1 + i);
    }
    CHECK_EQ(curfew_actor_delete(bx->a), 0);
    /* Delete is queued and this side is done: on_destroy ran inside. */
    check_once(bx, CURFEW_DESTROY_DELETED);
    CHECK_EQ(bx->msgs_at_destroy, 3);
    settle2(&a, &b);
    check_once(&ax, CURFEW_DESTROY_DELETED);
    CHECK_EQ(ax.msgs_at_destroy, 8); /* nothing sent before Delete lost */
    CHECK_EQ(ax.next_seq, 8);
    CHECK_EQ(ax.requests, 0);

    curfew_channel_stats sa, sb;
    CHECK_EQ(curfew_channel_stats_get(a.ch, &sa), 0);
    CHECK_EQ(curfew_channel_stats_get(b.ch, &sb), 0);
    CHECK_EQ(sa.messages_out, 3);
    CHECK_EQ(sa.messages_in, 8);
    CHECK_EQ(sb.messages_out, 8);
    CHECK_EQ(sb.messages_in, 3);
    CHECK_EQ(sa.actors_live, 0);
    CHECK_EQ(sb.actors_live, 0);
    CHECK_EQ(sa.frames_out, sb.frames_in);
    CHECK_EQ(sb.frames_out, sa.frames_in);

    CHECK_EQ(curfew_channel_close(a.ch), 0);
    run_to_close(&a, &b);
    CHECK_EQ(a.close_err, 0);
    CHECK_EQ(b.close_err, 0);
    free_pair(&a, &b);
}

static void send_two_finals(ch_rec *r)
{
    /* Final messages from inside on_destroy_request (A3). */
    CHECK_EQ(ch_rec_send_seq(r), 0);
    CHECK_EQ(ch_rec_send_seq(r), 0);
}

TEST(ch_destroy_done_final_messages_in_request)
{
    /* A3: messages sent inside on_destroy_request, which then returns
     * CURFEW_DONE, still precede Delete and reach the destroying side
     * before its on_destroy; a NULL on_destroy_request answers at once. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    ch_rec x = {0};
    CHECK_EQ(ch_rec_create(b.ch, NULL, 1, &x), 0);
    CHECK_EQ(x.id & 1, 0); /* the child side hands out even ids */
    settle2(&a, &b);
    ch_rec *ax = &a.peer[0];
    ax->on_req = send_two_finals;
    ax->req_result = CURFEW_DONE;
    CHECK_EQ(ch_rec_send_seq(ax), 0);
    CHECK_EQ(curfew_actor_destroy(x.a), 0);
    settle2(&a, &b);
    check_once(ax, CURFEW_DESTROY_DELETED);
    check_once(&x, CURFEW_DESTROY_DELETED);
    CHECK_EQ(x.msgs_at_destroy, 3);
    CHECK_EQ(x.next_seq, 3);

    /* No on_destroy_request at all: Delete goes at once. */
    ch_rec y = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 2, &y), 0);
    settle2(&a, &b);
    ch_rec *by = ch_side_peer(&b, y.id);
    CHECK(by != NULL);
    curfew_actor_ops no_req = ch_rec_ops;
    no_req.on_destroy_request = NULL;
    CHECK_EQ(curfew_actor_set_ops(by->a, &no_req, by), 0);
    CHECK_EQ(ch_rec_send_seq(by), 0);
    CHECK_EQ(curfew_actor_destroy(y.a), 0);
    settle2(&a, &b);
    check_once(by, CURFEW_DESTROY_DELETED);
    CHECK_EQ(by->requests, 0);
    check_once(&y, CURFEW_DESTROY_DELETED);
    CHECK_EQ(y.msgs_at_destroy, 1);

    CHECK_EQ(curfew_channel_close(b.ch), 0);
    run_to_close(&a, &b);
    CHECK_EQ(a.close_err, 0);
    CHECK_EQ(b.close_err, 0);
    free_pair(&a, &b);
}

TEST(ch_destroy_crossed_states)
{
    /* A3: both ends destroy the same actor at once (Destroys cross): both
     * answer with Delete, neither is asked (no on_destroy_request), every
     * message sent before each Destroy arrives, on_destroy once each. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    ch_rec ax = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 3, &ax), 0);
    settle2(&a, &b);
    ch_rec *bx = &b.peer[0];
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(ch_rec_send_seq(&ax), 0);
        CHECK_EQ(ch_rec_send_seq(bx), 0);
        CHECK_EQ(ch_rec_send_seq(bx), 0);
    }
    CHECK_EQ(curfew_actor_destroy(ax.a), 0);
    CHECK_EQ(curfew_actor_destroy(bx->a), 0);
    CHECK_EQ(curfew_actor_state(ax.a), CURFEW_ACTOR_DESTROYING);
    CHECK_EQ(curfew_actor_state(bx->a), CURFEW_ACTOR_DESTROYING);
    CHECK_EQ(ch_rec_send_seq(bx), -EPIPE);
    /* a reads b's messages and Destroy: it answers Delete and waits. */
    CHECK_EQ(curfew_channel_dispatch(a.ch), 0);
    CHECK_EQ(ax.msgs, 8);
    CHECK_EQ(curfew_actor_state(ax.a), CURFEW_ACTOR_DELETE_SENT);
    CHECK_EQ(ax.destroyed, 0);
    CHECK_EQ(curfew_actor_send(ax.a, 1, NULL, 0), -EPIPE);
    settle2(&a, &b);
    check_once(&ax, CURFEW_DESTROY_DELETED);
    check_once(bx, CURFEW_DESTROY_DELETED);
    CHECK_EQ(ax.requests, 0);
    CHECK_EQ(bx->requests, 0);
    CHECK_EQ(ax.msgs_at_destroy, 8);
    CHECK_EQ(bx->msgs_at_destroy, 4);
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    run_to_close(&a, &b);
    free_pair(&a, &b);
}

/* ---- A4: managers ------------------------------------------------------- */

TEST(ch_manager_destroy_busy_tree)
{
    /* A4: destroying a manager first runs the handshake for each managee
     * (deepest first), then for itself: on both ends the managees'
     * on_destroy (MANAGER_DELETED) runs before the manager's (DELETED),
     * with messages in flight both ways on every actor and one managee
     * answering late (PENDING). A managee created by the peer while the
     * manager's Destroy is in flight goes with it. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    ch_rec m = {0}, c1 = {0}, c2b = {0}, c2a = {0}, c3b = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 10, &m), 0);
    CHECK_EQ(ch_rec_create(a.ch, &m, 11, &c1), 0);
    settle2(&a, &b);
    ch_rec *bm = ch_side_peer(&b, m.id);
    CHECK(bm != NULL);
    CHECK_EQ(ch_rec_create(b.ch, bm, 12, &c2b), 0); /* b's managee of m */
    settle2(&a, &b);
    ch_rec *ac2 = ch_side_peer(&a, c2b.id);
    CHECK(ac2 != NULL);
    CHECK(curfew_actor_manager(ac2->a) == m.a);
    CHECK_EQ(ch_rec_create(a.ch, ac2, 13, &c2a), 0); /* depth 2 */
    settle2(&a, &b);
    ch_rec *bc1 = ch_side_peer(&b, c1.id), *bc2a = ch_side_peer(&b, c2a.id);
    CHECK(bc1 && bc2a);
    bc2a->req_result = CURFEW_PENDING; /* answers late */

    /* Traffic both ways on every actor, left in flight. */
    ch_rec *as[4] = {&m, &c1, ac2, &c2a};
    ch_rec *bs[4] = {bm, bc1, &c2b, bc2a};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(ch_rec_send_seq(as[i]), 0);
            CHECK_EQ(ch_rec_send_seq(bs[i]), 0);
        }
    CHECK_EQ(curfew_actor_destroy(m.a), 0);
    /* Every managee is being destroyed too: nothing can be sent on them,
     * nothing created under them. */
    CHECK_EQ(curfew_actor_state(c1.a), CURFEW_ACTOR_DESTROYING);
    CHECK_EQ(curfew_actor_state(c2a.a), CURFEW_ACTOR_DESTROYING);
    CHECK_EQ(curfew_actor_state(ac2->a), CURFEW_ACTOR_DESTROYING);
    CHECK_EQ(ch_rec_send_seq(&c1), -EPIPE);
    CHECK_EQ(ch_rec_send_seq(ac2), -EPIPE);
    ch_rec late = {0};
    CHECK_EQ(ch_rec_create(a.ch, &m, 14, &late), -EPIPE);
    CHECK(late.a == NULL);
    /* b creates under m before it hears of the Destroy. */
    CHECK_EQ(ch_rec_create(b.ch, bm, 15, &c3b), 0);
    CHECK_EQ(ch_rec_send_seq(&c3b), 0);

    settle2(&a, &b);
    /* c2a waits for b's late answer, so c2, then m wait too. */
    CHECK_EQ(bc2a->requests, 1);
    CHECK_EQ(bc2a->req_reason, CURFEW_DESTROY_MANAGER_DELETED);
    CHECK_EQ(bc2a->destroyed, 0);
    CHECK_EQ(m.destroyed, 0);
    CHECK_EQ(bm->destroyed, 0);
    CHECK_EQ(c2b.destroyed, 0);
    ch_rec *ac3 = ch_side_peer(&a, c3b.id);
    CHECK(ac3 != NULL);
    CHECK_EQ(ac3->destroyed, 1); /* destroyed as soon as it arrived... */
    CHECK_EQ(ac3->reason, CURFEW_DESTROY_MANAGER_DELETED);
    CHECK_EQ(ac3->msgs_at_destroy, 1); /* ...after its message */
    CHECK_EQ(c3b.requests, 1);
    CHECK_EQ(c3b.req_reason, CURFEW_DESTROY_MANAGER_DELETED);
    CHECK_EQ(ch_rec_send_seq(bc2a), 0); /* a final message */
    CHECK_EQ(curfew_actor_delete(bc2a->a), 0);
    settle2(&a, &b);

    /* Both ends: every managee before its manager, reasons as A4 says,
     * every message delivered before on_destroy. */
    check_once(&m, CURFEW_DESTROY_DELETED);
    check_once(bm, CURFEW_DESTROY_DELETED);
    check_once(&c1, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(bc1, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(ac2, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(&c2b, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(&c2a, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(bc2a, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(ac3, CURFEW_DESTROY_MANAGER_DELETED);
    check_once(&c3b, CURFEW_DESTROY_MANAGER_DELETED);
    CHECK_EQ(bm->req_reason, CURFEW_DESTROY_DELETED);
    CHECK_EQ(bc1->req_reason, CURFEW_DESTROY_MANAGER_DELETED);
    CHECK_EQ(c2b.req_reason, CURFEW_DESTROY_MANAGER_DELETED);
    CHECK(c2a.order < ac2->order && ac2->order < m.order);
    CHECK(c1.order < m.order && ac3->order < m.order);
    CHECK(bc2a->order < c2b.order && c2b.order < bm->order);
    CHECK(bc1->order < bm->order && c3b.order < bm->order);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(as[i]->msgs_at_destroy, i == 3 ? 4 : 3);
        CHECK_EQ(bs[i]->msgs_at_destroy, 3);
    }
    CHECK_EQ(c2a.next_seq, 4); /* the late final message too */
    curfew_channel_stats st;
    CHECK_EQ(curfew_channel_stats_get(a.ch, &st), 0);
    CHECK_EQ(st.actors_live, 0);
    CHECK_EQ(curfew_channel_stats_get(b.ch, &st), 0);
    CHECK_EQ(st.actors_live, 0);
    CHECK_EQ(curfew_channel_close(b.ch), 0);
    run_to_close(&a, &b);
    CHECK_EQ(a.close_err, 0);
    CHECK_EQ(b.close_err, 0);
    free_pair(&a, &b);
}

TEST(ch_manager_destroy_crossed)
{
    /* A4 with crossed Destroys: both ends destroy the same manager at
     * once; on each end the managees go first, MANAGER_DELETED, then the
     * manager, DELETED. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    ch_rec m = {0}, k[4] = {{0}};
    CHECK_EQ(ch_rec_create(b.ch, NULL, 1, &m), 0);
    settle2(&a, &b);
    ch_rec *am = &a.peer[0];
    for (int i = 0; i < 4; i++) {
        if (i % 2)
            CHECK_EQ(ch_rec_create(b.ch, &m, 2, &k[i]), 0);
        else
            CHECK_EQ(ch_rec_create(a.ch, am, 2, &k[i]), 0);
    }
    settle2(&a, &b);
    ch_rec *peer_k[4];
    for (int i = 0; i < 4; i++) {
        peer_k[i] = ch_side_peer(i % 2 ? &a : &b, k[i].id);
        CHECK(peer_k[i] != NULL);
        CHECK_EQ(ch_rec_send_seq(&k[i]), 0);
        CHECK_EQ(ch_rec_send_seq(peer_k[i]), 0);
    }
    CHECK_EQ(curfew_actor_destroy(m.a), 0);
    CHECK_EQ(curfew_actor_destroy(am->a), 0);
    settle2(&a, &b);
    check_once(&m, CURFEW_DESTROY_DELETED);
    check_once(am, CURFEW_DESTROY_DELETED);
    for (int i = 0; i < 4; i++) {
        check_once(&k[i], CURFEW_DESTROY_MANAGER_DELETED);
        check_once(peer_k[i], CURFEW_DESTROY_MANAGER_DELETED);
        CHECK_EQ(k[i].requests + peer_k[i]->requests, 0);
        CHECK_EQ(k[i].msgs_at_destroy, 1);
        CHECK_EQ(peer_k[i]->msgs_at_destroy, 1);
        ch_rec *on_a = i % 2 ? peer_k[i] : &k[i];
        ch_rec *on_b = i % 2 ? &k[i] : peer_k[i];
        CHECK(on_a->order < am->order);
        CHECK(on_b->order < m.order);
    }
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    run_to_close(&a, &b);
    free_pair(&a, &b);
}

/* ---- A5: WillClose ------------------------------------------------------ */

struct tree {
    ch_rec x, y, z; /* x: a's; y: b's; z: b's under x */
    ch_rec *bx, *ay, *az;
};

static void make_tree(ch_side *a, ch_side *b, struct tree *t)
{
    memset(t, 0, sizeof *t);
    CHECK_EQ(ch_rec_create(a->ch, NULL, 1, &t->x), 0);
    CHECK_EQ(ch_rec_create(b->ch, NULL, 2, &t->y), 0);
    settle2(a, b);
    t->bx = ch_side_peer(b, t->x.id);
    CHECK(t->bx != NULL);
    CHECK_EQ(ch_rec_create(b->ch, t->bx, 3, &t->z), 0);
    settle2(a, b);
    t->ay = ch_side_peer(a, t->y.id);
    t->az = ch_side_peer(a, t->z.id);
    CHECK(t->ay && t->az);
}

static void tree_traffic(struct tree *t, int n)
{
    ch_rec *all[6] = {&t->x, t->bx, &t->y, t->ay, &t->z, t->az};
    for (int k = 0; k < n; k++)
        for (int i = 0; i < 6; i++)
            CHECK_EQ(ch_rec_send_seq(all[i]), 0);
}

static void tree_check(struct tree *t, int reason, int per_side)
{
    ch_rec *all[6] = {&t->x, t->bx, &t->y, t->ay, &t->z, t->az};
    for (int i = 0; i < 6; i++) {
        check_once(all[i], reason);
        /* Nothing lost: everything the other end sent arrived first. */
        CHECK_EQ(all[i]->msgs_at_destroy, (int)all[i ^ 1]->sent_seq);
        CHECK_EQ(all[i]->next_seq, all[i ^ 1]->sent_seq);
        CHECK(all[i]->sent_seq >= (uint32_t)per_side);
    }
    CHECK(t->z.order < t->bx->order); /* A4 within a close, too */
    CHECK(t->az->order < t->x.order);
}

static void one_final(ch_rec *r)
{
    CHECK_EQ(ch_rec_send_seq(r), 0);
}

TEST(ch_close_with_actors_and_traffic)
{
    /* A5: close with live actors on both ends (one a managee) and messages
     * in flight both ways; the answering end sends final messages, one
     * actor late (PENDING). Both ends get on_close(0) once, every actor
     * NORMAL_CLOSE once, nothing lost, nothing left. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    struct tree t;
    make_tree(&a, &b, &t);
    tree_traffic(&t, 5);
    t.bx->on_req = one_final;
    t.y.on_req = one_final;
    t.y.req_result = CURFEW_PENDING;
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    CHECK_EQ(curfew_channel_state(a.ch), CURFEW_CHANNEL_CLOSING);
    CHECK_EQ(curfew_channel_close(a.ch), -EALREADY);
    ch_rec nope = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 9, &nope), -EPIPE);
    CHECK_EQ(ch_rec_send_seq(&t.x), -EPIPE);
    CHECK_EQ(ch_rec_send_seq(t.ay), -EPIPE);
    int t0 = curfew_channel_timeout_ms(a.ch);
    CHECK(t0 > 0 && t0 <= 10000); /* default close_timeout_ms */

    settle2(&a, &b);
    CHECK_EQ(curfew_channel_state(b.ch), CURFEW_CHANNEL_CLOSING);
    CHECK_EQ(curfew_channel_close(b.ch), -EALREADY);
    CHECK_EQ(t.y.requests, 1);
    CHECK_EQ(t.y.req_reason, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(t.y.destroyed, 0);
    CHECK_EQ(a.closes + b.closes, 0); /* y still holds the close */
    CHECK_EQ(ch_rec_send_seq(&t.y), 0);
    CHECK_EQ(curfew_actor_delete(t.y.a), 0);
    run_to_close(&a, &b);
    CHECK_EQ(a.closes, 1);
    CHECK_EQ(b.closes, 1);
    CHECK_EQ(a.close_err, 0);
    CHECK_EQ(b.close_err, 0);
    CHECK_EQ(a.actors_at_close, 0);
    CHECK_EQ(b.actors_at_close, 0);
    tree_check(&t, CURFEW_DESTROY_NORMAL_CLOSE, 5);
    CHECK(t.ay->order < a.close_order && t.x.order < a.close_order);
    CHECK_EQ(curfew_channel_close(a.ch), -EALREADY);
    CHECK_EQ(curfew_channel_state(a.ch), CURFEW_CHANNEL_CLOSED);
    CHECK_EQ(curfew_channel_events(a.ch), 0);
    free_pair(&a, &b);
    CHECK_EQ(a.closes, 1); /* free after close adds nothing */
    CHECK_EQ(b.closes, 1);
}

TEST(ch_close_crossed)
{
    /* A5: both ends close at once with live actors and traffic in flight:
     * both on_close(0) once, every actor NORMAL_CLOSE once on both ends,
     * nothing lost. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    struct tree t;
    make_tree(&a, &b, &t);
    tree_traffic(&t, 4);
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    CHECK_EQ(curfew_channel_close(b.ch), 0);
    run_to_close(&a, &b);
    CHECK_EQ(a.close_err, 0);
    CHECK_EQ(b.close_err, 0);
    tree_check(&t, CURFEW_DESTROY_NORMAL_CLOSE, 4);
    ch_rec *all[6] = {&t.x, t.bx, &t.y, t.ay, &t.z, t.az};
    for (int i = 0; i < 6; i++)
        CHECK_EQ(all[i]->requests, 0); /* crossed: nobody was asked */
    free_pair(&a, &b);
}

TEST(ch_close_while_peer_creates)
{
    /* A5: the peer creates an actor (and sends on it) while our WillClose
     * is on its way: the Create reaches us after we closed; that actor
     * also goes with NORMAL_CLOSE on both ends, its messages delivered,
     * and after the peer heard WillClose it can create nothing more. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    ch_rec old = {0}, w = {0}, w2 = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 1, &old), 0);
    settle2(&a, &b);
    CHECK_EQ(ch_rec_create(b.ch, NULL, 2, &w), 0);
    CHECK_EQ(ch_rec_send_seq(&w), 0);
    CHECK_EQ(ch_rec_send_seq(&w), 0);
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    /* b hears WillClose (and old's Destroy) first. */
    CHECK_EQ(curfew_channel_dispatch(b.ch), 0);
    CHECK_EQ(curfew_channel_state(b.ch), CURFEW_CHANNEL_CLOSING);
    CHECK_EQ(ch_rec_create(b.ch, NULL, 3, &w2), -EPIPE);
    CHECK_EQ(ch_rec_send_seq(&w), 0); /* w is still alive: may send */
    run_to_close(&a, &b);
    CHECK_EQ(a.close_err, 0);
    CHECK_EQ(b.close_err, 0);
    ch_rec *aw = ch_side_peer(&a, w.id);
    CHECK(aw != NULL);
    int i = (int)(aw - a.peer);
    CHECK_EQ(a.states_at_create[i], CURFEW_CHANNEL_CLOSING);
    check_once(aw, CURFEW_DESTROY_NORMAL_CLOSE);
    check_once(&w, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(aw->msgs_at_destroy, 3);
    CHECK_EQ(w.req_reason, CURFEW_DESTROY_NORMAL_CLOSE);
    check_once(&old, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(a.npeer, 1);
    free_pair(&a, &b);
}

TEST(ch_close_timeout)
{
    /* A5 with a peer that never answers WillClose (it never dispatches):
     * on_close(-ETIMEDOUT) once after close_timeout_ms, every actor
     * ABNORMAL once, managee first. */
    int sv[2];
    ch_socketpair(sv);
    ch_side a;
    curfew_channel_config cfg;
    ch_side_init(&a, &cfg, CURFEW_SIDE_PARENT);
    cfg.close_timeout_ms = 200;
    CHECK_EQ(curfew_channel_create(sv[0], &cfg, &a.ch), 0);
    raw_hello(sv[1]);
    ch_rec m = {0}, c = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 1, &m), 0);
    CHECK_EQ(ch_rec_create(a.ch, &m, 2, &c), 0);
    CHECK_EQ(curfew_channel_timeout_ms(a.ch), -1); /* open: no deadline */
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    int left = curfew_channel_timeout_ms(a.ch);
    CHECK(left > 0 && left <= 200);
    CHECK_EQ(ch_run_until_closed(a.ch, 5000), 1);
    int64_t took = th_now_ms() - t0;
    CHECK(took >= 195);
    CHECK(took < 3000);
    CHECK_EQ(a.closes, 1);
    CHECK_EQ(a.close_err, -ETIMEDOUT);
    check_once(&m, CURFEW_DESTROY_ABNORMAL);
    check_once(&c, CURFEW_DESTROY_ABNORMAL);
    CHECK(c.order < m.order && m.order < a.close_order);
    CHECK(raw_drain(sv[1]) > 0); /* it did send Destroys and WillClose */
    curfew_channel_free(a.ch);
    CHECK_EQ(a.closes, 1);
    close(sv[1]);
}

TEST(ch_close_timeout_never)
{
    /* A5: close_timeout_ms = CURFEW_NEVER waits as long as the peer is
     * there (no deadline), and still ends when the peer goes away. */
    int sv[2];
    ch_socketpair(sv);
    ch_side a;
    curfew_channel_config cfg;
    ch_side_init(&a, &cfg, CURFEW_SIDE_PARENT);
    cfg.close_timeout_ms = CURFEW_NEVER;
    CHECK_EQ(curfew_channel_create(sv[0], &cfg, &a.ch), 0);
    raw_hello(sv[1]);
    ch_rec m = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 1, &m), 0);
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    CHECK_EQ(curfew_channel_timeout_ms(a.ch), -1);
    CHECK_EQ(ch_run_until_closed(a.ch, 300), 0);
    CHECK_EQ(a.closes, 0);
    close(sv[1]);
    CHECK_EQ(ch_run_until_closed(a.ch, 3000), 1);
    CHECK_EQ(a.close_err, -ECONNRESET);
    check_once(&m, CURFEW_DESTROY_ABNORMAL);
    curfew_channel_free(a.ch);
}

/* ---- A2: free, callbacks ------------------------------------------------ */

TEST(ch_free_open_channel)
{
    /* A2: curfew_channel_free on an open channel: every actor gets
     * on_destroy(ABNORMAL) once, managees first, then on_close(-ECANCELED)
     * once; the peer sees the channel go away: ABNORMAL, -ECONNRESET. */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    struct tree t;
    make_tree(&a, &b, &t);
    tree_traffic(&t, 2);
    ch_rec pend = {0};
    CHECK_EQ(ch_rec_create(a.ch, NULL, 5, &pend), 0);
    settle2(&a, &b);
    ch_rec *bp = ch_side_peer(&b, pend.id);
    bp->req_result = CURFEW_PENDING;
    CHECK_EQ(curfew_actor_destroy(pend.a), 0);
    settle2(&a, &b);
    CHECK_EQ(bp->requests, 1); /* b owes a Delete it will never send */
    curfew_channel_free(a.ch);
    a.ch = NULL;
    CHECK_EQ(a.closes, 1);
    CHECK_EQ(a.close_err, -ECANCELED);
    CHECK_EQ(a.actors_at_close, 0);
    check_once(&t.x, CURFEW_DESTROY_ABNORMAL);
    check_once(t.ay, CURFEW_DESTROY_ABNORMAL);
    check_once(t.az, CURFEW_DESTROY_ABNORMAL);
    check_once(&pend, CURFEW_DESTROY_ABNORMAL);
    CHECK(t.az->order < t.x.order);
    CHECK(t.x.order < a.close_order && pend.order < a.close_order);
    CHECK_EQ(ch_run_until_closed(b.ch, 3000), 1);
    CHECK_EQ(b.closes, 1);
    CHECK_EQ(b.close_err, -ECONNRESET);
    check_once(t.bx, CURFEW_DESTROY_ABNORMAL);
    check_once(&t.y, CURFEW_DESTROY_ABNORMAL);
    check_once(&t.z, CURFEW_DESTROY_ABNORMAL);
    check_once(bp, CURFEW_DESTROY_ABNORMAL);
    CHECK(t.z.order < t.bx->order);
    curfew_channel_free(b.ch);
    CHECK_EQ(b.closes, 1);
    curfew_channel_free(NULL); /* no-op */
}

TEST(ch_dispatch_inside_callbacks_eperm)
{
    /* Dispatching a channel from inside one of its own callbacks is
     * refused with -EPERM (on_actor_created, on_message,
     * on_destroy_request, on_destroy, on_close); the outer dispatch goes
     * on unharmed (A2: on_destroy still once). */
    ch_side a, b;
    ch_pair(&a, &b, NULL, NULL);
    a.probe = a.ch;
    b.probe = b.ch;
    ch_rec x = {0}, y = {0};
    CHECK_EQ(ch_rec_create(b.ch, NULL, 1, &x), 0);
    CHECK_EQ(ch_rec_create(a.ch, NULL, 1, &y), 0);
    x.probe = b.ch;
    y.probe = a.ch;
    settle2(&a, &b);
    CHECK_EQ(a.probe_created, -EPERM);
    CHECK_EQ(b.probe_created, -EPERM);
    ch_rec *ax = ch_side_peer(&a, x.id);
    ax->probe = a.ch;
    CHECK_EQ(ch_rec_send_seq(&x), 0);
    CHECK_EQ(ch_rec_send_seq(&y), 0);
    settle2(&a, &b);
    CHECK_EQ(ax->probe_msg, -EPERM);
    ch_rec *by = ch_side_peer(&b, y.id);
    by->probe = b.ch;
    CHECK_EQ(by->msgs, 1);
    CHECK_EQ(curfew_actor_destroy(x.a), 0);
    settle2(&a, &b);
    CHECK_EQ(ax->probe_req, -EPERM);
    CHECK_EQ(ax->probe_destroy, -EPERM);
    CHECK_EQ(x.probe_destroy, -EPERM);
    check_once(ax, CURFEW_DESTROY_DELETED);
    check_once(&x, CURFEW_DESTROY_DELETED);
    CHECK_EQ(curfew_channel_close(a.ch), 0);
    run_to_close(&a, &b);
    CHECK_EQ(a.probe_close, -EPERM);
    CHECK_EQ(b.probe_close, -EPERM);
    CHECK_EQ(by->probe_req, -EPERM);
    check_once(&y, CURFEW_DESTROY_NORMAL_CLOSE);
    check_once(by, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(curfew_channel_dispatch(a.ch), 1); /* outside again: fine */
    free_pair(&a, &b);
}

TEST(ch_api_arguments)
{
    /* Conventions and A1/A3 limits: bad arguments give -EINVAL, data over
     * the frame limit -EMSGSIZE, nothing aborts. */
    curfew_channel *ch = NULL;
    CHECK_EQ(curfew_channel_create(-1, NULL, &ch), -EINVAL);
    int sv[2];
    ch_socketpair(sv);
    CHECK_EQ(curfew_channel_create(sv[0], NULL, NULL), -EINVAL);
    curfew_channel_config bad = {.side = (curfew_channel_side)2};
    CHECK_EQ(curfew_channel_create(sv[0], &bad, &ch), -EINVAL);
    curfew_channel_config neg = {.close_timeout_ms = -5};
    CHECK_EQ(curfew_channel_create(sv[0], &neg, &ch), -EINVAL);
    CHECK(ch == NULL);
    CHECK_EQ(curfew_channel_dispatch(NULL), -EINVAL);
    CHECK_EQ(curfew_channel_close(NULL), -EINVAL);
    CHECK_EQ(curfew_channel_state(NULL), -EINVAL);
    CHECK_EQ(curfew_actor_state(NULL), -EINVAL);
    CHECK_EQ(curfew_actor_destroy(NULL), -EINVAL);
    CHECK_EQ(curfew_actor_delete(NULL), -EINVAL);
    CHECK_EQ(curfew_actor_send(NULL, 1, NULL, 0), -EINVAL);
    CHECK_EQ(curfew_actor_set_ops(NULL, &ch_rec_ops, NULL), -EINVAL);
    curfew_channel_stats st;
    CHECK_EQ(curfew_channel_stats_get(NULL, &st), -EINVAL);

    ch_side a;
    curfew_channel_config cfg;
    ch_side_init(&a, &cfg, CURFEW_SIDE_PARENT);
    cfg.max_frame = 64;
    CHECK_EQ(curfew_channel_create(sv[0], &cfg, &a.ch), 0);
    curfew_actor *x = NULL;
    curfew_actor_ops no_msg = {.on_destroy = NULL};
    CHECK_EQ(curfew_actor_create(a.ch, NULL, 1, NULL, 0, NULL, NULL, &x),
             -EINVAL);
    CHECK_EQ(curfew_actor_create(a.ch, NULL, 1, NULL, 0, &no_msg, NULL, &x),
             -EINVAL);
    CHECK_EQ(curfew_actor_create(a.ch, NULL, 1, NULL, 4, &ch_rec_ops, NULL, &x),
             -EINVAL);
    char big[128] = {0};
    CHECK_EQ(curfew_actor_create(a.ch, NULL, 1, big, 61, &ch_rec_ops, NULL, &x),
             -EMSGSIZE);
    CHECK(x == NULL);
    ch_rec r = {0};
    CHECK_EQ(curfew_actor_create(a.ch, NULL, 1, big, 60, &ch_rec_ops, &r, &r.a),
             0);
    CHECK_EQ(curfew_actor_send(r.a, 1, big, 64), 0);
    CHECK_EQ(curfew_actor_send(r.a, 1, big, 65), -EMSGSIZE);
    CHECK_EQ(curfew_actor_send(r.a, 1, NULL, 3), -EINVAL);
    CHECK_EQ(curfew_actor_set_ops(r.a, &no_msg, NULL), -EINVAL);
    CHECK_EQ(curfew_actor_delete(r.a), -EINVAL);
    CHECK_EQ(curfew_actor_state(r.a), CURFEW_ACTOR_ALIVE);
    CHECK(curfew_actor_channel(r.a) == a.ch);
    CHECK(curfew_actor_manager(r.a) == NULL);
    CHECK_EQ(curfew_actor_kind(r.a), 1);

    /* A manager from another channel. */
    int sv2[2];
    ch_socketpair(sv2);
    curfew_channel *other = NULL;
    CHECK_EQ(curfew_channel_create(sv2[0], NULL, &other), 0);
    CHECK_EQ(curfew_actor_create(other, r.a, 1, NULL, 0, &ch_rec_ops, NULL, &x),
             -EINVAL);
    curfew_channel_free(other);
    close(sv2[1]);

    curfew_channel_free(a.ch);
    CHECK_EQ(a.close_err, -ECANCELED);
    check_once(&r, CURFEW_DESTROY_ABNORMAL);
    close(sv[1]);
}
