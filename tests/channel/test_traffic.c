/* Many actors, two ends, two loops: each end of a channel runs its own poll
 * loop (curfew_channel_fd / _events / _timeout_ms, then
 * curfew_channel_dispatch), in two threads of this process or in two
 * processes (a child started with th_spawn_child). Both ends follow one
 * plan: who creates each actor (and under which manager), who destroys it
 * (one end, or both at once: crossed Destroys), who answers late
 * (CURFEW_PENDING), who closes. CONTRACT.md A2, A3, A4, A5.
 *
 * How "nothing was lost" is proven: on every actor each end sends DATA 1,
 * 2, 3, ... and, as its very last message, END carrying its count, before
 * its own Destroy or Delete (in on_destroy_request for the answering end,
 * or in on_actor_created for an actor that arrives while we close). The
 * receiver checks every DATA is the next number, END matches the count,
 * and END has arrived when on_destroy runs. Afterwards the two ends swap
 * their per-actor counts over a second socket pair and compare them.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ch_util.h"
#include "harness.h"

#include <curfew/channel.h>
#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define EP_MAX 256
#define KIND 77u
#define T_DATA 1u
#define T_END 2u

enum { WHO_NONE = 0, WHO_PARENT = 1, WHO_CHILD = 2, WHO_BOTH = 3 };
enum { SC_CROSSED = 1, SC_MANAGERS = 2, SC_CLOSE = 3, SC_CLOSE_CROSSED = 4 };

typedef struct plan_actor {
    int creator;   /* WHO_PARENT or WHO_CHILD */
    int manager;   /* index, or -1 */
    int destroyer; /* WHO_*: NONE goes with its manager or the close */
    int pending;   /* the answering end returns CURFEW_PENDING */
} plan_actor;

typedef struct plan {
    int sc;
    int n;
    uint32_t m;      /* DATA each end sends per actor */
    int closer;      /* WHO_PARENT, or WHO_BOTH at once */
    int close_early; /* close with the actors alive */
    int progressive; /* the child creates one actor per loop turn */
    plan_actor a[EP_MAX];
} plan;

static void plan_make(plan *p, int sc)
{
    memset(p, 0, sizeof *p);
    p->sc = sc;
    p->closer = WHO_PARENT;
    if (sc == SC_CROSSED) {
        /* 200 top-level actors, half made by each end. Even ones are
         * destroyed by both ends at once; of the odd ones, half by the
         * parent, half by the child, half of those answered late. */
        p->n = 200;
        p->m = 20;
        for (int i = 0; i < p->n; i++) {
            plan_actor *a = &p->a[i];
            a->creator = i < 100 ? WHO_PARENT : WHO_CHILD;
            a->manager = -1;
            a->destroyer = i % 2 == 0   ? WHO_BOTH
                           : i % 4 == 1 ? WHO_PARENT
                                        : WHO_CHILD;
            a->pending = i % 8 == 1 || i % 8 == 3;
        }
    } else if (sc == SC_MANAGERS) {
        /* Four managers (destroyed by the parent, the parent, both, the
         * child), six managees each from alternating ends, three
         * grand-managees each; some answered late. */
        static const int mdestroyer[4] = {WHO_PARENT, WHO_PARENT, WHO_BOTH,
                                          WHO_CHILD};
        p->n = 40;
        p->m = 16;
        for (int k = 0; k < 4; k++) {
            p->a[k].creator = k % 2 ? WHO_CHILD : WHO_PARENT;
            p->a[k].manager = -1;
            p->a[k].destroyer = mdestroyer[k];
            p->a[k].pending = k == 3;
            for (int j = 0; j < 6; j++) {
                plan_actor *a = &p->a[4 + k * 6 + j];
                a->creator = j % 2 ? WHO_CHILD : WHO_PARENT;
                a->manager = k;
                a->pending = j % 3 == 0;
            }
            for (int j = 0; j < 3; j++) {
                plan_actor *a = &p->a[28 + k * 3 + j];
                a->creator = (j + k) % 2 ? WHO_CHILD : WHO_PARENT;
                a->manager = 4 + k * 6 + j;
                a->pending = j == 1;
            }
        }
    } else {
        /* 120 actors, every fifth under the one before; no one destroys
         * them: the close does. SC_CLOSE: the parent closes while the
         * child is still creating (one per turn). SC_CLOSE_CROSSED: both
         * close at once. */
        p->n = 120;
        p->m = 30;
        p->close_early = 1;
        p->progressive = sc == SC_CLOSE;
        p->closer = sc == SC_CLOSE ? WHO_PARENT : WHO_BOTH;
        for (int i = 0; i < p->n; i++) {
            plan_actor *a = &p->a[i];
            a->creator = i < 60 ? WHO_PARENT : WHO_CHILD;
            a->manager = i % 5 == 4 ? i - 1 : -1;
            a->pending = i % 6 == 0;
        }
    }
}

/* The end whose Destroy reaches actor i first: its own destroyer or the
 * nearest manager's. */
static int plan_root_destroyer(const plan *p, int i)
{
    while (p->a[i].destroyer == WHO_NONE && p->a[i].manager >= 0)
        i = p->a[i].manager;
    return p->a[i].destroyer;
}

static int plan_reason(const plan *p, int i)
{
    if (p->close_early)
        return CURFEW_DESTROY_NORMAL_CLOSE;
    return p->a[i].destroyer != WHO_NONE ? CURFEW_DESTROY_DELETED
                                         : CURFEW_DESTROY_MANAGER_DELETED;
}

static int plan_in_subtree(const plan *p, int j, int root)
{
    for (; j >= 0; j = p->a[j].manager)
        if (j == root)
            return 1;
    return 0;
}

/* ---- one end ------------------------------------------------------------ */

struct ep;

typedef struct ep_act {
    struct ep *ep;
    int idx;
    curfew_actor *a; /* NULL before its creation and after on_destroy */
    int known;
    uint32_t sent, recv;
    int end_sent, end_recv, end_at_destroy;
    int destroy_called;
    int pending; /* answered CURFEW_PENDING, Delete not yet given */
    int requests, req_reason;
    int destroyed, reason, order;
} ep_act;

typedef struct ep {
    const plan *p;
    int who;
    int fd, sync;
    curfew_channel *ch;
    ep_act act[EP_MAX];
    int closes, close_err;
    int order;
    int barrier; /* 0: not ready, 1: said 'R', 2: passed */
    int close_called;
    int no_more_creates;
    int created_while_closing;
    int creates_refused;
    uint64_t turns;
} ep;

static void put_pair(unsigned char *b, uint32_t x, uint32_t y)
{
    fr_put32(b, x);
    fr_put32(b + 4, y);
}

static void ep_send_data(ep_act *x)
{
    CHECK(!x->end_sent);
    unsigned char b[8];
    put_pair(b, (uint32_t)x->idx, x->sent + 1);
    CHECK_EQ(curfew_actor_send(x->a, T_DATA, b, sizeof b), 0);
    x->sent++;
}

static void ep_send_end(ep_act *x)
{
    if (x->end_sent)
        return;
    unsigned char b[8];
    put_pair(b, (uint32_t)x->idx, x->sent);
    /* The library must still let us send: we have sent neither Destroy
     * nor Delete for it (A3). */
    CHECK_EQ(curfew_actor_send(x->a, T_END, b, sizeof b), 0);
    x->end_sent = 1;
}

static void ep_message(curfew_actor *a, uint32_t type, const void *data,
                       size_t len, void *arg)
{
    ep_act *x = arg;
    CHECK(x->a == a);
    CHECK_EQ(len, 8);
    CHECK_EQ(fr_get32(data), (uint32_t)x->idx);
    uint32_t v = fr_get32((const unsigned char *)data + 4);
    CHECK(!x->end_recv); /* nothing after END */
    CHECK(!x->destroyed);
    if (type == T_DATA) {
        CHECK_EQ(v, x->recv + 1); /* in order, none missing (A3) */
        x->recv = v;
    } else {
        CHECK_EQ(type, T_END);
        CHECK_EQ(v, x->recv);
        x->end_recv = 1;
    }
}

static int ep_request(curfew_actor *a, curfew_destroy_reason reason, void *arg)
{
    ep_act *x = arg;
    const plan *p = x->ep->p;
    CHECK(x->a == a);
    x->requests++;
    x->req_reason = (int)reason;
    CHECK_EQ(reason, plan_reason(p, x->idx));
    CHECK_EQ(curfew_actor_state(a), CURFEW_ACTOR_DELETING);
    if (p->a[x->idx].pending) {
        x->pending = 1; /* final DATA and END follow from the loop */
        return CURFEW_PENDING;
    }
    ep_send_end(x);
    return CURFEW_DONE;
}

static void ep_destroy(curfew_actor *a, curfew_destroy_reason reason, void *arg)
{
    ep_act *x = arg;
    ep *e = x->ep;
    CHECK(x->a == a);
    CHECK(!x->destroyed);
    x->destroyed = 1;
    x->reason = (int)reason;
    x->order = ++e->order;
    x->end_at_destroy = x->end_recv;
    CHECK_EQ(curfew_actor_state(a), CURFEW_ACTOR_DEAD);
    CHECK_EQ(curfew_actor_send(a, T_DATA, NULL, 0), -EPIPE);
    /* A4: every managee of ours already went. */
    for (int j = 0; j < e->p->n; j++)
        if (e->p->a[j].manager == x->idx && e->act[j].known)
            CHECK(e->act[j].destroyed);
    x->a = NULL;
}

static const curfew_actor_ops ep_ops = {.on_message = ep_message,
                                        .on_destroy_request = ep_request,
                                        .on_destroy = ep_destroy};

static int ep_created(curfew_channel *ch, curfew_actor *a,
                      curfew_actor *manager, uint32_t kind, const void *data,
                      size_t len, void *arg)
{
    ep *e = arg;
    CHECK_EQ(kind, KIND);
    CHECK_EQ(len, 4);
    uint32_t idx = fr_get32(data);
    CHECK(idx < (uint32_t)e->p->n);
    const plan_actor *pa = &e->p->a[idx];
    CHECK(pa->creator != e->who);
    ep_act *x = &e->act[idx];
    CHECK(!x->known);
    if (pa->manager < 0)
        CHECK(manager == NULL);
    else
        CHECK(manager != NULL && manager == e->act[pa->manager].a);
    x->known = 1;
    x->a = a;
    CHECK_EQ(curfew_actor_set_ops(a, &ep_ops, x), 0);
    int st = curfew_channel_state(ch);
    int mst = manager ? curfew_actor_state(manager) : CURFEW_ACTOR_ALIVE;
    if (st != CURFEW_CHANNEL_OPEN || mst == CURFEW_ACTOR_DESTROYING ||
        mst == CURFEW_ACTOR_DELETE_SENT) {
        /* We are closing (or destroying its manager): the library will
         * destroy it as soon as we return, so its END goes now. */
        if (st != CURFEW_CHANNEL_OPEN)
            e->created_while_closing++;
        ep_send_end(x);
    }
    return 0;
}

static void ep_closed(curfew_channel *ch, int err, void *arg)
{
    ep *e = arg;
    (void)ch;
    e->closes++;
    e->close_err = err;
}

static int ep_create(ep *e, int i)
{
    const plan_actor *pa = &e->p->a[i];
    ep_act *x = &e->act[i];
    unsigned char b[4];
    fr_put32(b, (uint32_t)i);
    curfew_actor *m = pa->manager >= 0 ? e->act[pa->manager].a : NULL;
    int r = curfew_actor_create(e->ch, m, KIND, b, sizeof b, &ep_ops, x, &x->a);
    if (r == 0) {
        x->known = 1;
        CHECK_EQ(curfew_actor_id(x->a) & 1, e->who == WHO_PARENT ? 1u : 0u);
    }
    return r;
}

static int ep_can_create(ep *e, int i)
{
    int mi = e->p->a[i].manager;
    if (mi < 0)
        return 1;
    ep_act *m = &e->act[mi];
    return m->a && curfew_actor_state(m->a) == CURFEW_ACTOR_ALIVE;
}

/* Every actor of i's subtree is known here and has sent at least k. */
static int ep_subtree_ready(ep *e, int root, uint32_t k)
{
    for (int j = 0; j < e->p->n; j++) {
        if (!plan_in_subtree(e->p, j, root))
            continue;
        ep_act *x = &e->act[j];
        if (!x->known || !x->a || x->sent < k)
            return 0;
    }
    return 1;
}

static void ep_destroy_subtree(ep *e, int root)
{
    for (int j = 0; j < e->p->n; j++)
        if (plan_in_subtree(e->p, j, root)) {
            ep_send_end(&e->act[j]);
            e->act[j].destroy_called = 1;
        }
    ep_act *x = &e->act[root];
    CHECK_EQ(curfew_actor_destroy(x->a), 0);
    /* A3: the destroying end may no longer send, on it or its managees. */
    CHECK_EQ(curfew_actor_send(x->a, T_DATA, "12345678", 8), -EPIPE);
    for (int j = 0; j < e->p->n; j++)
        if (j != root && plan_in_subtree(e->p, j, root) && e->act[j].a)
            CHECK_EQ(curfew_actor_send(e->act[j].a, T_DATA, "12345678", 8),
                     -EPIPE);
}

static int ep_barrier_ready(ep *e)
{
    const plan *p = e->p;
    if (p->closer == WHO_BOTH) {
        for (int i = 0; i < p->n; i++)
            if (!e->act[i].known || e->act[i].sent < p->m / 2)
                return 0;
        return 1;
    }
    int any = 0;
    for (int i = 0; i < p->n; i++)
        if (p->a[i].destroyer == WHO_BOTH) {
            any = 1;
            if (!ep_subtree_ready(e, i, p->m))
                return 0;
        }
    return any;
}

static void ep_end_all(ep *e)
{
    for (int i = 0; i < e->p->n; i++)
        if (e->act[i].a)
            ep_send_end(&e->act[i]);
}

static void sync_put(int fd, char c)
{
    raw_send(fd, &c, 1);
}

static char sync_get(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int64_t end = th_now_ms() + ms;
    for (;;) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        if (n == 1)
            return c;
        if (n == 0)
            th_fail(__FILE__, __LINE__, "sync socket closed");
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "no sync byte within %d ms", ms);
        (void)poll(&p, 1, 10);
    }
}

/* The other end said 'R' too: both say 'G', and neither dispatches in
 * between, so what each end does now crosses what the other does. */
static void ep_barrier_pass(ep *e)
{
    const plan *p = e->p;
    CHECK_EQ(sync_get(e->sync, 100), 'R');
    sync_put(e->sync, 'G');
    CHECK_EQ(sync_get(e->sync, 5000), 'G');
    e->barrier = 2;
    if (p->closer == WHO_BOTH) {
        ep_end_all(e);
        CHECK_EQ(curfew_channel_close(e->ch), 0);
        e->close_called = 1;
        return;
    }
    for (int i = 0; i < p->n; i++)
        if (p->a[i].destroyer == WHO_BOTH)
            ep_destroy_subtree(e, i);
}

/* One turn of the plan; returns 1 if it did something. */
static int ep_step(ep *e)
{
    const plan *p = e->p;
    int did = 0;
    int open =
        curfew_channel_state(e->ch) == CURFEW_CHANNEL_OPEN && !e->close_called;
    int creates = p->progressive && e->who == WHO_CHILD ? 1 : EP_MAX;
    for (int i = 0; i < p->n; i++) {
        ep_act *x = &e->act[i];
        if (!x->known && p->a[i].creator == e->who && open &&
            !e->no_more_creates && creates > 0 && ep_can_create(e, i)) {
            int r = ep_create(e, i);
            if (r == -EPIPE) {
                /* The peer's WillClose came first (A5). */
                CHECK(p->close_early);
                e->no_more_creates = 1;
                e->creates_refused++;
            } else {
                CHECK_EQ(r, 0);
            }
            creates--;
            did = 1;
        }
        if (x->a && !x->end_sent) {
            for (int k = 0; k < 2 && x->sent < p->m; k++) {
                ep_send_data(x);
                did = 1;
            }
            if (x->pending && x->sent >= p->m)
                ep_send_end(x);
        }
        if (x->a && x->pending && x->end_sent) {
            x->pending = 0;
            did = 1;
            CHECK_EQ(curfew_actor_delete(x->a), 0);
        }
    }
    open =
        curfew_channel_state(e->ch) == CURFEW_CHANNEL_OPEN && !e->close_called;
    /* Destroys by this end alone, with traffic still in flight. */
    for (int i = 0; open && i < p->n; i++) {
        ep_act *x = &e->act[i];
        if (p->a[i].destroyer != e->who || !x->a || x->destroy_called ||
            curfew_actor_state(x->a) != CURFEW_ACTOR_ALIVE)
            continue;
        if (x->sent >= p->m && x->recv >= p->m / 2 &&
            ep_subtree_ready(e, i, p->m / 2)) {
            ep_destroy_subtree(e, i);
            did = 1;
        }
    }
    if (open && e->barrier == 0 && ep_barrier_ready(e)) {
        sync_put(e->sync, 'R');
        e->barrier = 1;
        did = 1;
    }
    if (open && p->closer == WHO_PARENT && e->who == WHO_PARENT) {
        int ready = 1, peer_known = 0;
        for (int i = 0; i < p->n; i++) {
            ep_act *x = &e->act[i];
            if (p->close_early) {
                if (p->a[i].creator == WHO_PARENT && !x->known)
                    ready = 0;
                if (p->a[i].creator == WHO_PARENT && x->a && x->sent < p->m / 2)
                    ready = 0;
                if (p->a[i].creator == WHO_CHILD && x->known)
                    peer_known++;
            } else if (!x->destroyed) {
                ready = 0;
            }
        }
        if (p->close_early && peer_known < 20)
            ready = 0;
        if (ready) {
            if (!p->close_early) {
                curfew_channel_stats st;
                CHECK_EQ(curfew_channel_stats_get(e->ch, &st), 0);
                CHECK_EQ(st.actors_live, 0);
            }
            ep_end_all(e);
            CHECK_EQ(curfew_channel_close(e->ch), 0);
            CHECK_EQ(curfew_channel_close(e->ch), -EALREADY);
            e->close_called = 1;
            did = 1;
        }
    }
    return did;
}

static void ep_dump(ep *e)
{
    int known = 0, destroyed = 0, pending = 0;
    for (int i = 0; i < e->p->n; i++) {
        known += e->act[i].known;
        destroyed += e->act[i].destroyed;
        pending += e->act[i].pending;
    }
    fprintf(stderr,
            "%s end: state %d, known %d, destroyed %d, pending %d, barrier "
            "%d, close_called %d, pending bytes %zu, turns %llu\n",
            e->who == WHO_PARENT ? "parent" : "child",
            curfew_channel_state(e->ch), known, destroyed, pending, e->barrier,
            e->close_called, curfew_channel_pending_bytes(e->ch),
            (unsigned long long)e->turns);
}

static void ep_run(ep *e)
{
    curfew_channel_config cfg = {
        .side = e->who == WHO_PARENT ? CURFEW_SIDE_PARENT : CURFEW_SIDE_CHILD,
        .on_actor_created = ep_created,
        .on_close = ep_closed,
        .arg = e};
    for (int i = 0; i < e->p->n; i++) {
        e->act[i].ep = e;
        e->act[i].idx = i;
    }
    CHECK_EQ(curfew_channel_create(e->fd, &cfg, &e->ch), 0);
    int64_t deadline = th_now_ms() + 12000;
    for (;;) {
        int r = curfew_channel_dispatch(e->ch);
        CHECK(r == 0 || r == 1);
        if (r == 1)
            break;
        int did = ep_step(e);
        e->turns++;
        if (th_now_ms() > deadline) {
            ep_dump(e);
            th_fail(__FILE__, __LINE__, "no progress within 12 s");
        }
        struct pollfd pf[2] = {
            {.fd = curfew_channel_fd(e->ch),
             .events = (short)curfew_channel_events(e->ch)},
            {.fd = e->barrier == 1 ? e->sync : -1, .events = POLLIN}};
        int t = curfew_channel_timeout_ms(e->ch);
        if (t < 0 || t > 20)
            t = 20;
        if (did)
            t = 0;
        if (poll(pf, 2, t) > 0 && pf[1].revents)
            ep_barrier_pass(e);
    }
    CHECK_EQ(curfew_channel_dispatch(e->ch), 1);
}

/* Every check one end can make alone, once its channel closed. */
static void ep_verify(ep *e)
{
    const plan *p = e->p;
    CHECK_EQ(e->closes, 1);
    CHECK_EQ(e->close_err, 0); /* A5: a WillClose handshake */
    uint64_t in = 0, out = 0;
    for (int i = 0; i < p->n; i++) {
        ep_act *x = &e->act[i];
        if (!p->close_early)
            CHECK(x->known);
        if (!x->known)
            continue;
        CHECK(x->a == NULL);
        CHECK_EQ(x->destroyed, 1); /* A2: exactly once */
        CHECK_EQ(x->reason, plan_reason(p, i));
        CHECK_EQ(x->end_at_destroy, 1); /* A3: nothing lost */
        CHECK_EQ(x->pending, 0);
        CHECK(x->end_sent);
        int root = plan_root_destroyer(p, i);
        int asked;
        if (p->close_early)
            asked = p->closer == WHO_BOTH || p->closer == e->who ? 0 : 1;
        else
            asked = root == WHO_BOTH || root == e->who ? 0 : 1;
        CHECK_EQ(x->requests, asked);
        int mi = p->a[i].manager;
        if (mi >= 0) {
            CHECK(e->act[mi].known);
            CHECK(x->order < e->act[mi].order); /* A4 */
        }
        in += x->recv + (uint64_t)x->end_recv;
        out += x->sent + (uint64_t)x->end_sent;
    }
    curfew_channel_stats st;
    CHECK_EQ(curfew_channel_stats_get(e->ch, &st), 0);
    CHECK_EQ(st.messages_in, in);
    CHECK_EQ(st.messages_out, out);
    CHECK_EQ(st.actors_live, 0);
}

/* Swaps per-actor counts with the other end and compares them. */
static void ep_compare(ep *e)
{
    const plan *p = e->p;
    unsigned char mine[EP_MAX * 12], theirs[EP_MAX * 12];
    for (int i = 0; i < p->n; i++) {
        fr_put32(mine + 12 * i, (uint32_t)e->act[i].known);
        fr_put32(mine + 12 * i + 4, e->act[i].sent);
        fr_put32(mine + 12 * i + 8, e->act[i].recv);
    }
    size_t len = (size_t)p->n * 12;
    sync_put(e->sync, 'S');
    raw_send(e->sync, mine, len);
    CHECK_EQ(sync_get(e->sync, 5000), 'S');
    size_t got = 0;
    int64_t end = th_now_ms() + 5000;
    while (got < len) {
        ssize_t n = recv(e->sync, theirs + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        CHECK(n != 0);
        CHECK(th_now_ms() < end);
        struct pollfd pf = {.fd = e->sync, .events = POLLIN};
        (void)poll(&pf, 1, 10);
    }
    for (int i = 0; i < p->n; i++) {
        /* The same actors exist on both ends... */
        CHECK_EQ(fr_get32(theirs + 12 * i), (uint32_t)e->act[i].known);
        /* ...and each received exactly what the other sent. */
        CHECK_EQ(fr_get32(theirs + 12 * i + 4), e->act[i].recv);
        CHECK_EQ(fr_get32(theirs + 12 * i + 8), e->act[i].sent);
    }
}

static void ep_report(const ep *e)
{
    int asked = 0, crossed = 0, known = 0;
    for (int i = 0; i < e->p->n; i++) {
        known += e->act[i].known;
        asked += e->act[i].requests;
        crossed += e->act[i].known && !e->act[i].requests;
    }
    fprintf(stderr,
            "%s end: %d actors, %d asked to delete, %d not asked, %d created "
            "while closing, %d creates refused, %llu turns\n",
            e->who == WHO_PARENT ? "parent" : "child", known, asked, crossed,
            e->created_while_closing, e->creates_refused,
            (unsigned long long)e->turns);
}

static void ep_finish(ep *e)
{
    ep_verify(e);
    ep_compare(e);
    ep_report(e);
    curfew_channel_free(e->ch);
    CHECK_EQ(e->closes, 1);
    close(e->sync);
}

/* ---- two threads -------------------------------------------------------- */

static void *ep_thread(void *arg)
{
    ep *e = arg;
    ep_run(e);
    ep_finish(e);
    return NULL;
}

static void run_threads(int sc)
{
    static plan p;
    plan_make(&p, sc);
    int sv[2], sy[2];
    ch_socketpair(sv);
    ch_socketpair(sy);
    ep *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    CHECK(a && b);
    a->p = b->p = &p;
    a->who = WHO_PARENT;
    b->who = WHO_CHILD;
    a->fd = sv[0];
    a->sync = sy[0];
    b->fd = sv[1];
    b->sync = sy[1];
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, ep_thread, b), 0);
    ep_thread(a);
    CHECK_EQ(pthread_join(th, NULL), 0);
    free(a);
    free(b);
}

/* ---- two processes ------------------------------------------------------ */

CHILD(ep_peer)
{
    CHECK_EQ(argc, 3);
    static plan p;
    plan_make(&p, atoi(argv[0]));
    ep *e = calloc(1, sizeof *e);
    CHECK(e != NULL);
    e->p = &p;
    e->who = WHO_CHILD;
    e->fd = atoi(argv[1]);
    e->sync = atoi(argv[2]);
    ep_run(e);
    ep_finish(e);
    free(e);
    return 0;
}

static void run_processes(int sc)
{
    static plan p;
    plan_make(&p, sc);
    int sv[2], sy[2];
    ch_socketpair(sv);
    ch_socketpair(sy);
    ch_inheritable(sv[1]);
    ch_inheritable(sy[1]);
    char s_sc[16], s_fd[16], s_sy[16];
    snprintf(s_sc, sizeof s_sc, "%d", sc);
    snprintf(s_fd, sizeof s_fd, "%d", sv[1]);
    snprintf(s_sy, sizeof s_sy, "%d", sy[1]);
    pid_t pid = th_spawn_child("ep_peer", s_sc, s_fd, s_sy, NULL);
    close(sv[1]);
    close(sy[1]);
    ep *e = calloc(1, sizeof *e);
    CHECK(e != NULL);
    e->p = &p;
    e->who = WHO_PARENT;
    e->fd = sv[0];
    e->sync = sy[0];
    ep_run(e);
    ep_finish(e);
    free(e);
    int st = th_wait_child(pid, 15000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
}

/* ---- the cases ---------------------------------------------------------- */

TEST(ch_many_actors_crossed_threads)
{
    /* A2, A3: 200 actors, two threads; 100 destroyed by both ends at once
     * (crossed: nobody is asked), 100 by one end with traffic in flight,
     * half of those answered late with final messages. Nothing lost, every
     * on_destroy once with DELETED, then a clean close. */
    run_threads(SC_CROSSED);
}

TEST(ch_many_actors_crossed_processes)
{
    /* A2, A3: the same with the two ends in two processes. */
    run_processes(SC_CROSSED);
}

TEST(ch_managers_busy_threads)
{
    /* A4: managers destroyed by one end, by the other, by both at once,
     * with busy managees (messages both ways, some answering late) and
     * grand-managees: on both ends every managee's on_destroy
     * (MANAGER_DELETED) before its manager's (DELETED). */
    run_threads(SC_MANAGERS);
}

TEST(ch_managers_busy_processes)
{
    /* A4: the same across two processes. */
    run_processes(SC_MANAGERS);
}

TEST(ch_close_busy_threads)
{
    /* A5: the parent closes with 120 actors alive and messages in flight
     * while the child is still creating actors (Creates in flight): both
     * on_close(0), every actor NORMAL_CLOSE once, nothing lost. */
    run_threads(SC_CLOSE);
}

TEST(ch_close_busy_processes)
{
    /* A5: the same across two processes. */
    run_processes(SC_CLOSE);
}

TEST(ch_close_crossed_threads)
{
    /* A5: both ends close at once with every actor alive and busy. */
    run_threads(SC_CLOSE_CROSSED);
}

TEST(ch_close_crossed_processes)
{
    /* A5: the same across two processes. */
    run_processes(SC_CLOSE_CROSSED);
}
