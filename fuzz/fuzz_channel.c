/* libFuzzer target for channels and actors (CONTRACT.md A1-A5).
 *
 * A channel is made over one end of a socketpair; the fuzzer plays the peer.
 * Input layout:
 *
 *   byte 0   bit 0: side (0 parent, 1 child); bit 1: do not send the peer's
 *            HELLO for it (the input has to); bit 2: close_timeout_ms
 *            CURFEW_NEVER instead of the default
 *   byte 1   max_frame = 4 + 16 * byte (4 .. 4084)
 *   then commands, each one byte c:
 *     c < 0x80   feed the next (c + 1) bytes with curfew__channel_feed()
 *     c >= 0x80  action (c >> 4) & 7 with argument x = c & 15:
 *       0 curfew_actor_send() on live actor x (length: next byte * 17)
 *       1 curfew_actor_destroy() on live actor x
 *       2 curfew_actor_delete() on pending actor x (one whose
 *         on_destroy_request returned CURFEW_PENDING), else on live actor x
 *       3 curfew_actor_create() (top-level if x is even, else under live
 *         actor x >> 1; data length: next byte)
 *       4 curfew_channel_close()
 *       5 the next byte becomes the callback policy (below)
 *       6 x == 15: close the peer's end (unread output and all), without
 *         dispatching; otherwise curfew_channel_dispatch(), after: x & 3 == 1
 *         writing the next (byte + 1) bytes into the peer's end, x & 3 == 2
 *         shutting the peer's end for writing
 *       7 x < 8: feed the next (((x & 7) << 8 | byte) + 1) bytes;
 *         x >= 8: feed one frame built from the next bytes (below)
 *
 * A built frame has type x & 7 (0: the next byte, any value), then an actor
 * selector s and an argument b. s: 0 id 0; s & 0x80 the peer's next fresh
 * id; s & 0x40 the id s & 0x3f; else the id of live actor s. b: CREATE
 * under live actor b (0: top-level), kind b, b & 3 bytes of data; MSG type
 * b with b & 7 bytes; DESTROY reason 1 + b % 3; other types aux 0. b ==
 * 0xff gives a wrong aux (a manager, a reason or an aux the type does not
 * allow). Raw feeding reaches the decoder's corners; built frames reach deep
 * handshake states quickly.
 *
 * Policy bits, read by the callbacks: 0 on_destroy_request returns
 * CURFEW_PENDING (else CURFEW_DONE); 1 on_destroy_request sends a final
 * message; 2 on_message replies; 3 on_message destroys its actor (odd
 * message types); 4 on_actor_created creates a managee of the new actor;
 * 5 and 6 together: on_actor_created refuses; 6 on_destroy destroys the
 * manager; 7 on_message closes the channel (message types with bit 1).
 *
 * Actors are known only through on_actor_created, curfew_actor_create() and
 * on_destroy; none is touched after its on_destroy. Checked: on_destroy
 * exactly once for every actor (A2), managees before their manager (A4),
 * on_close exactly once and after every on_destroy, return values of every
 * call against the actor's state (A3: -EPIPE after Destroy), the stats'
 * live-actor count, and everything the channel writes to the peer: whole
 * frames under the limit, HELLO first, no message for an actor after this
 * side's Destroy or Delete for it, nothing after WILLCLOSE_ACK, no CREATE
 * after WILLCLOSE (A1, A3, A5).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "channel/channel_internal.h"

#include <curfew/channel.h>
#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                     \
    do {                                                              \
        fprintf(stderr, "fuzz_channel: %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                                 \
        fputc('\n', stderr);                                          \
        abort();                                                      \
    } while (0)

#define CHECK(c)                          \
    do {                                  \
        if (!(c))                         \
            FAIL("check failed: %s", #c); \
    } while (0)

#define HDR 16

/* Policy bits (see the top of the file). */
#define P_PENDING 0x01u
#define P_FINAL_MSG 0x02u
#define P_REPLY 0x04u
#define P_MSG_DESTROY 0x08u
#define P_CREATE_SUB 0x10u
#define P_REFUSE 0x60u
#define P_DESTROY_MGR 0x40u
#define P_MSG_CLOSE 0x80u

struct rec {
    curfew_actor *a; /* valid while live */
    long manager;    /* index of the manager's record, -1: top-level */
    unsigned live : 1, destroyed : 1, pending : 1, local : 1;
};

struct oid {
    uint32_t id;
    unsigned destroy : 1, del : 1;
};

static struct {
    curfew_channel *ch;
    curfew_channel_side side;
    uint32_t max_frame;
    int peer; /* our end of the socketpair, -1 once closed */
    int peer_shut;
    unsigned policy;

    struct rec *recs;
    size_t nrecs, caprecs, nlive;

    int closes, close_err;

    /* what the channel wrote to the peer */
    unsigned char *ob;
    size_t olen, ocap;
    uint32_t peer_next; /* the peer's next fresh actor id */
    int out_frames, out_willclose, out_ack;
    uint32_t out_last_create;
    struct oid *oids;
    size_t noids, capoids;
} g;

static const curfew_actor_ops ops_;

static unsigned char pattern[4400];

/* ---- actor records ------------------------------------------------------ */

static size_t new_rec(curfew_actor *a, long manager, int local)
{
    if (g.nrecs == g.caprecs) {
        size_t cap = g.caprecs ? g.caprecs * 2 : 64;
        struct rec *r = realloc(g.recs, cap * sizeof(*r));
        CHECK(r != NULL);
        g.recs = r;
        g.caprecs = cap;
    }
    struct rec *r = &g.recs[g.nrecs];
    memset(r, 0, sizeof(*r));
    r->a = a;
    r->manager = manager;
    r->live = 1;
    r->local = local ? 1 : 0;
    g.nlive++;
    return g.nrecs++;
}

/* The record an actor's arg names; it must be a live actor's. */
static size_t rec_index(curfew_actor *a, void *arg)
{
    size_t i = (size_t)(uintptr_t)arg;
    CHECK(i < g.nrecs);
    CHECK(g.recs[i].live);
    CHECK(!g.recs[i].destroyed);
    CHECK(g.recs[i].a == a);
    return i;
}

static long find_live(const curfew_actor *a)
{
    for (size_t i = 0; i < g.nrecs; i++)
        if (g.recs[i].live && g.recs[i].a == a)
            return (long)i;
    return -1;
}

/* The k-th live actor (k modulo their number), -1 if there is none; with
 * only_pending, among those whose destroy request is pending. */
static long pick_live(unsigned k, int only_pending)
{
    size_t n = 0;
    for (size_t i = 0; i < g.nrecs; i++)
        if (g.recs[i].live && (!only_pending || g.recs[i].pending))
            n++;
    if (!n)
        return -1;
    k %= n;
    for (size_t i = 0; i < g.nrecs; i++)
        if (g.recs[i].live && (!only_pending || g.recs[i].pending) && k-- == 0)
            return (long)i;
    return -1;
}

/* ---- callbacks ---------------------------------------------------------- */

static void on_message(curfew_actor *a, uint32_t type, const void *data,
                       size_t len, void *arg)
{
    size_t i = rec_index(a, arg);
    (void)i;
    CHECK(len <= g.max_frame);
    CHECK(len == 0 || data != NULL);
    CHECK(curfew_actor_channel(a) == g.ch);
    int st = curfew_actor_state(a);
    /* the peer may not send once it sent Destroy or Delete */
    CHECK(st == CURFEW_ACTOR_ALIVE || st == CURFEW_ACTOR_DESTROYING);
    CHECK(curfew_channel_dispatch(g.ch) == -EPERM);
    if (g.policy & P_REPLY) {
        int r = curfew_actor_send(a, type, data, len);
        CHECK(r == (st == CURFEW_ACTOR_ALIVE ? 0 : -EPIPE));
    }
    if ((g.policy & P_MSG_DESTROY) && (type & 1)) {
        int r = curfew_actor_destroy(a);
        CHECK(r == (st == CURFEW_ACTOR_ALIVE ? 0 : -EALREADY));
    }
    if ((g.policy & P_MSG_CLOSE) && (type & 2)) {
        int open = curfew_channel_state(g.ch) == CURFEW_CHANNEL_OPEN;
        CHECK(curfew_channel_close(g.ch) == (open ? 0 : -EALREADY));
    }
}

static int on_destroy_request(curfew_actor *a, curfew_destroy_reason reason,
                              void *arg)
{
    size_t i = rec_index(a, arg);
    CHECK(reason >= CURFEW_DESTROY_DELETED &&
          reason <= CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK(curfew_actor_state(a) == CURFEW_ACTOR_DELETING);
    CHECK(curfew_actor_destroy(a) == -EALREADY);
    if (g.policy & P_FINAL_MSG)
        CHECK(curfew_actor_send(a, 99, "bye", 3) ==
              (g.max_frame >= 3 ? 0 : -EMSGSIZE));
    if (g.policy & P_PENDING) {
        g.recs[i].pending = 1;
        return CURFEW_PENDING;
    }
    return CURFEW_DONE;
}

static void on_destroy(curfew_actor *a, curfew_destroy_reason reason, void *arg)
{
    size_t i = rec_index(a, arg);
    CHECK(reason >= CURFEW_DESTROY_DELETED &&
          reason <= CURFEW_DESTROY_ABNORMAL);
    CHECK(curfew_actor_state(a) == CURFEW_ACTOR_DEAD);
    CHECK(g.closes == 0); /* on_close comes after every on_destroy */
    /* managees first (A4) */
    for (size_t j = 0; j < g.nrecs; j++)
        if (g.recs[j].live && g.recs[j].manager == (long)i)
            FAIL("actor %zu destroyed before its managee %zu", i, j);
    /* nothing more goes out for it */
    CHECK(curfew_actor_send(a, 1, NULL, 0) == -EPIPE);
    CHECK(curfew_actor_destroy(a) == -EALREADY);
    long m = g.recs[i].manager;
    g.recs[i].live = 0;
    g.recs[i].destroyed = 1;
    g.recs[i].a = NULL;
    g.nlive--;
    if ((g.policy & P_DESTROY_MGR) && m >= 0 && g.recs[m].live) {
        int st = curfew_actor_state(g.recs[m].a);
        int r = curfew_actor_destroy(g.recs[m].a);
        CHECK(r == (st == CURFEW_ACTOR_ALIVE ? 0 : -EALREADY));
    }
}

static const curfew_actor_ops ops_ = {on_message, on_destroy_request,
                                      on_destroy};

static int on_actor_created(curfew_channel *ch, curfew_actor *a,
                            curfew_actor *manager, uint32_t kind,
                            const void *data, size_t len, void *arg)
{
    (void)arg;
    CHECK(ch == g.ch);
    CHECK(curfew_actor_channel(a) == ch);
    CHECK(curfew_actor_manager(a) == manager);
    CHECK(curfew_actor_kind(a) == kind);
    CHECK(curfew_actor_state(a) == CURFEW_ACTOR_ALIVE);
    /* the peer's ids: even for a parent, odd for a child */
    uint32_t id = curfew_actor_id(a);
    CHECK(id != 0);
    CHECK((id & 1) == (g.side == CURFEW_SIDE_PARENT ? 0u : 1u));
    CHECK(len + 4 <= g.max_frame);
    CHECK(len == 0 || data != NULL);
    long m = -1;
    if (manager) {
        m = find_live(manager);
        CHECK(m >= 0);
    }
    if (id + 2 > g.peer_next)
        g.peer_next = id + 2;
    size_t i = new_rec(a, m, 0);
    CHECK(curfew_actor_set_ops(a, &ops_, (void *)(uintptr_t)i) == 0);
    if ((g.policy & P_REFUSE) == P_REFUSE)
        return -EPERM; /* the channel fails with -EPROTO */
    if (g.policy & P_CREATE_SUB) {
        curfew_actor *c = NULL;
        size_t j = g.nrecs; /* the record it will get */
        int open = curfew_channel_state(ch) == CURFEW_CHANNEL_OPEN;
        int r = curfew_actor_create(ch, a, 7, "sub", 3, &ops_,
                                    (void *)(uintptr_t)j, &c);
        if (!open)
            CHECK(r == -EPIPE);
        else if (g.max_frame < 7)
            CHECK(r == -EMSGSIZE);
        else
            CHECK(r == 0);
        if (r == 0) {
            CHECK(c != NULL);
            CHECK(new_rec(c, (long)i, 1) == j);
        } else {
            CHECK(c == NULL);
        }
    }
    return 0;
}

static void on_close(curfew_channel *ch, int err, void *arg)
{
    (void)arg;
    CHECK(ch == g.ch);
    CHECK(++g.closes == 1);
    CHECK(err <= 0);
    CHECK(g.nlive == 0); /* every on_destroy ran before */
    g.close_err = err;
    CHECK(curfew_channel_state(ch) == CURFEW_CHANNEL_CLOSED);
    CHECK(curfew_channel_close(ch) == -EALREADY);
    CHECK(curfew_channel_dispatch(ch) == -EPERM);
}

/* ---- what the channel sends --------------------------------------------- */

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static struct oid *out_id(uint32_t id)
{
    for (size_t i = 0; i < g.noids; i++)
        if (g.oids[i].id == id)
            return &g.oids[i];
    if (g.noids == g.capoids) {
        size_t cap = g.capoids ? g.capoids * 2 : 64;
        struct oid *o = realloc(g.oids, cap * sizeof(*o));
        CHECK(o != NULL);
        g.oids = o;
        g.capoids = cap;
    }
    struct oid *o = &g.oids[g.noids++];
    memset(o, 0, sizeof(*o));
    o->id = id;
    return o;
}

static void check_out_frame(const unsigned char *h, uint32_t len)
{
    int type = h[4];
    uint32_t id = get32(h + 8), aux = get32(h + 12);
    CHECK(h[5] == 0 && h[6] == 0 && h[7] == 0);
    CHECK(type >= 1 && type <= 7);
    CHECK(!g.out_ack); /* nothing after WILLCLOSE_ACK (A5) */
    if (g.out_frames++ == 0) {
        CHECK(type == 1 && id == 0 && aux == 1 && len == 0);
        return;
    }
    CHECK(type != 1);
    if (type != 2 && type != 3)
        CHECK(len == 0);
    switch (type) {
    case 2: { /* CREATE */
        CHECK(!g.out_willclose);
        CHECK(len >= 4);
        CHECK(id != 0);
        CHECK((id & 1) == (g.side == CURFEW_SIDE_PARENT ? 1u : 0u));
        CHECK(id > g.out_last_create);
        g.out_last_create = id;
        (void)out_id(id);
        break;
    }
    case 3: { /* MSG: never after our own Destroy or Delete (A3) */
        struct oid *o = out_id(id);
        CHECK(id != 0);
        CHECK(!o->destroy && !o->del);
        break;
    }
    case 4: { /* DESTROY */
        struct oid *o = out_id(id);
        CHECK(id != 0);
        CHECK(aux >= 1 && aux <= 3);
        CHECK(!o->destroy && !o->del);
        o->destroy = 1;
        break;
    }
    case 5: { /* DELETE */
        struct oid *o = out_id(id);
        CHECK(id != 0);
        CHECK(!o->del);
        o->del = 1;
        break;
    }
    case 6:
        CHECK(id == 0 && aux == 0);
        CHECK(!g.out_willclose);
        g.out_willclose = 1;
        break;
    case 7:
        CHECK(id == 0 && aux == 0);
        g.out_ack = 1;
        break;
    }
}

/* Reads what the channel wrote so far and checks every whole frame. */
static void drain(void)
{
    if (g.peer < 0)
        return;
    for (;;) {
        unsigned char buf[8192];
        ssize_t n = recv(g.peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            break;
        if (g.olen + (size_t)n > g.ocap) {
            size_t cap = g.ocap ? g.ocap : 8192;
            while (cap < g.olen + (size_t)n)
                cap *= 2;
            unsigned char *o = realloc(g.ob, cap);
            CHECK(o != NULL);
            g.ob = o;
            g.ocap = cap;
        }
        memcpy(g.ob + g.olen, buf, (size_t)n);
        g.olen += (size_t)n;
    }
    size_t off = 0;
    while (g.olen - off >= HDR) {
        uint32_t len = get32(g.ob + off);
        CHECK(len <= g.max_frame);
        if (g.olen - off - HDR < len)
            break;
        check_out_frame(g.ob + off, len);
        off += HDR + len;
    }
    memmove(g.ob, g.ob + off, g.olen - off);
    g.olen -= off;
}

/* ---- driving ------------------------------------------------------------ */

/* After every top-level call: closed exactly when on_close ran, and the
 * live-actor count agrees with ours. */
static void check_state(void)
{
    curfew_channel_stats st;
    CHECK(curfew_channel_stats_get(g.ch, &st) == 0);
    CHECK(st.actors_live == g.nlive);
    int state = curfew_channel_state(g.ch);
    CHECK(state >= CURFEW_CHANNEL_OPEN && state <= CURFEW_CHANNEL_CLOSED);
    if (state == CURFEW_CHANNEL_CLOSED) {
        CHECK(g.closes == 1);
        CHECK(g.nlive == 0);
        CHECK(curfew_channel_fd(g.ch) == -1);
        CHECK(curfew_channel_events(g.ch) == 0);
        CHECK(curfew_channel_dispatch(g.ch) == 1);
    } else {
        CHECK(g.closes == 0);
        CHECK(curfew_channel_fd(g.ch) >= 0);
        int ev = curfew_channel_events(g.ch);
        CHECK((ev & ~(POLLIN | POLLOUT)) == 0);
        CHECK(!(ev & POLLOUT) == !curfew_channel_pending_bytes(g.ch));
        int t = curfew_channel_timeout_ms(g.ch);
        CHECK(t >= -1);
        if (state == CURFEW_CHANNEL_OPEN)
            CHECK(t <= 0);
        else
            CHECK(t <= 10000);
    }
    drain();
}

static void feed(const uint8_t *p, size_t n)
{
    int was_closed = curfew_channel_state(g.ch) == CURFEW_CHANNEL_CLOSED;
    int r = curfew__channel_feed(g.ch, p, n);
    if (was_closed)
        CHECK(r == 0);
    if (r) {
        CHECK(r == -EPROTO || r == -ENOMEM);
        CHECK(curfew_channel_state(g.ch) == CURFEW_CHANNEL_CLOSED);
        CHECK(g.closes == 1);
        CHECK(g.close_err == r);
    }
}

static void dispatch(void)
{
    int r = curfew_channel_dispatch(g.ch);
    CHECK(r == 0 || r == 1);
    CHECK(r == (curfew_channel_state(g.ch) == CURFEW_CHANNEL_CLOSED));
}

static int take(const uint8_t **p, size_t *n)
{
    if (!*n)
        return 0;
    (*n)--;
    return *(*p)++;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t live_id(unsigned k)
{
    long i = pick_live(k, 0);
    return i >= 0 ? curfew_actor_id(g.recs[i].a) : 0;
}

/* A frame of the given type (0: any byte from the input), with an actor
 * and an argument chosen from the input among the ids in play. */
static void build_frame(unsigned type, const uint8_t **p, size_t *n)
{
    unsigned char f[HDR + 8];
    unsigned t = type ? type : (unsigned)take(p, n);
    unsigned s = (unsigned)take(p, n), b = (unsigned)take(p, n);
    uint32_t id, aux = 0;
    size_t len = 0;
    if (s == 0)
        id = 0;
    else if (s & 0x80)
        id = g.peer_next;
    else if (s & 0x40)
        id = s & 0x3f;
    else
        id = live_id(s);
    switch (t) {
    case 1: /* HELLO */
        aux = b == 0xff ? 2 : 1;
        break;
    case 2: /* CREATE */
        aux = b == 0xff ? g.peer_next : b ? live_id(b) : 0;
        put32(f + HDR, b);
        len = 4 + (b & 3);
        memcpy(f + HDR + 4, pattern, b & 3);
        if (s & 0x80)
            g.peer_next += 2;
        break;
    case 3: /* MSG */
        aux = b;
        len = b & 7;
        memcpy(f + HDR, pattern, len);
        break;
    case 4: /* DESTROY */
        aux = b == 0xff ? CURFEW_DESTROY_ABNORMAL : 1 + b % 3;
        break;
    default:
        aux = b == 0xff ? 1 : 0;
        break;
    }
    put32(f, (uint32_t)len);
    f[4] = (unsigned char)t;
    f[5] = f[6] = f[7] = 0;
    put32(f + 8, id);
    put32(f + 12, aux);
    feed(f, HDR + len);
}

static void action(unsigned op, unsigned x, const uint8_t **p, size_t *n)
{
    int state = curfew_channel_state(g.ch);
    switch (op) {
    case 0: { /* send */
        size_t len = (size_t)take(p, n) * 17;
        long i = pick_live(x, 0);
        if (i < 0)
            break;
        curfew_actor *a = g.recs[i].a;
        int st = curfew_actor_state(a);
        int r = curfew_actor_send(a, x, pattern, len);
        if (st == CURFEW_ACTOR_DESTROYING || st == CURFEW_ACTOR_DELETE_SENT)
            CHECK(r == -EPIPE); /* A3 */
        else if (len > g.max_frame)
            CHECK(r == -EMSGSIZE);
        else
            CHECK(r == 0);
        break;
    }
    case 1: { /* destroy */
        long i = pick_live(x, 0);
        if (i < 0)
            break;
        curfew_actor *a = g.recs[i].a;
        int st = curfew_actor_state(a);
        int r = curfew_actor_destroy(a);
        CHECK(r == (st == CURFEW_ACTOR_ALIVE ? 0 : -EALREADY));
        break;
    }
    case 2: { /* delete: a pending one if there is one, else any */
        long i = pick_live(x, 1);
        if (i >= 0) {
            CHECK(curfew_actor_state(g.recs[i].a) == CURFEW_ACTOR_DELETING);
            g.recs[i].pending = 0;
            CHECK(curfew_actor_delete(g.recs[i].a) == 0);
            break;
        }
        i = pick_live(x, 0);
        if (i < 0)
            break;
        curfew_actor *a = g.recs[i].a;
        int st = curfew_actor_state(a);
        int r = curfew_actor_delete(a);
        if (st == CURFEW_ACTOR_ALIVE)
            CHECK(r == -EINVAL);
        else if (st == CURFEW_ACTOR_DESTROYING)
            CHECK(r == -EINVAL || r == -EALREADY); /* crossed or not */
        else
            CHECK(r == -EALREADY);
        break;
    }
    case 3: { /* create */
        size_t len = (size_t)take(p, n);
        long m = -1;
        if (x & 1) {
            m = pick_live(x >> 1, 0);
            if (m < 0)
                break;
        }
        curfew_actor *mgr = m >= 0 ? g.recs[m].a : NULL;
        int mst = mgr ? curfew_actor_state(mgr) : CURFEW_ACTOR_ALIVE;
        size_t j = g.nrecs;
        curfew_actor *c = NULL;
        int r = curfew_actor_create(g.ch, mgr, x, pattern, len, &ops_,
                                    (void *)(uintptr_t)j, &c);
        if (state != CURFEW_CHANNEL_OPEN || mst != CURFEW_ACTOR_ALIVE)
            CHECK(r == -EPIPE);
        else if (len + 4 > g.max_frame)
            CHECK(r == -EMSGSIZE);
        else
            CHECK(r == 0);
        if (r == 0) {
            CHECK(c != NULL);
            CHECK(curfew_actor_state(c) == CURFEW_ACTOR_ALIVE);
            CHECK(curfew_actor_manager(c) == mgr);
            CHECK(curfew_actor_kind(c) == x);
            CHECK((curfew_actor_id(c) & 1) ==
                  (g.side == CURFEW_SIDE_PARENT ? 1u : 0u));
            CHECK(new_rec(c, m, 1) == j);
        } else {
            CHECK(c == NULL);
        }
        break;
    }
    case 4: /* close */
        CHECK(curfew_channel_close(g.ch) ==
              (state == CURFEW_CHANNEL_OPEN ? 0 : -EALREADY));
        break;
    case 5:
        g.policy = (unsigned)take(p, n);
        break;
    case 6:
        if ((x & 3) == 1) {
            size_t len = (size_t)take(p, n) + 1;
            if (len > *n)
                len = *n;
            if (g.peer >= 0 && !g.peer_shut && len)
                (void)send(g.peer, *p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            *p += len;
            *n -= len;
        } else if (x == 15) {
            /* Unread output makes the channel's next read or write fail
             * (ECONNRESET, EPIPE): the paths of a crashed peer. */
            if (g.peer >= 0) {
                close(g.peer);
                g.peer = -1;
            }
            break;
        } else if ((x & 3) == 2) {
            if (g.peer >= 0 && !g.peer_shut) {
                shutdown(g.peer, SHUT_WR);
                g.peer_shut = 1;
            }
        }
        dispatch();
        break;
    case 7: {
        if (x & 8) {
            build_frame(x & 7, p, n);
            break;
        }
        size_t len = ((size_t)(x & 7) << 8 | (size_t)take(p, n)) + 1;
        if (len > *n)
            len = *n;
        feed(*p, len);
        *p += len;
        *n -= len;
        break;
    }
    }
}

/* Bad arguments are refused, never crash (contract conventions). */
static void check_bad_arguments(void)
{
    curfew_actor *a = NULL;
    curfew_channel_stats st;
    CHECK(curfew_channel_create(-1, NULL, &g.ch) == -EINVAL);
    CHECK(curfew_channel_fd(NULL) == -EINVAL);
    CHECK(curfew_channel_events(NULL) == 0);
    CHECK(curfew_channel_timeout_ms(NULL) == -1);
    CHECK(curfew_channel_dispatch(NULL) == -EINVAL);
    CHECK(curfew_channel_close(NULL) == -EINVAL);
    CHECK(curfew_channel_state(NULL) == -EINVAL);
    CHECK(curfew_channel_pending_bytes(NULL) == 0);
    CHECK(curfew_channel_stats_get(NULL, &st) == -EINVAL);
    CHECK(curfew_actor_create(NULL, NULL, 0, NULL, 0, &ops_, NULL, &a) ==
          -EINVAL);
    CHECK(a == NULL);
    CHECK(curfew_actor_set_ops(NULL, &ops_, NULL) == -EINVAL);
    CHECK(curfew_actor_send(NULL, 0, NULL, 0) == -EINVAL);
    CHECK(curfew_actor_destroy(NULL) == -EINVAL);
    CHECK(curfew_actor_delete(NULL) == -EINVAL);
    CHECK(curfew_actor_state(NULL) == -EINVAL);
    CHECK(curfew_actor_id(NULL) == 0);
    CHECK(curfew_actor_kind(NULL) == 0);
    CHECK(curfew_actor_manager(NULL) == NULL);
    CHECK(curfew_actor_channel(NULL) == NULL);
    curfew_channel_free(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (unsigned char)(i * 31 + 7);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 0;
    memset(&g, 0, sizeof(g));
    g.side = (data[0] & 1) ? CURFEW_SIDE_CHILD : CURFEW_SIDE_PARENT;
    g.max_frame = 4 + 16u * data[1];
    g.peer = sv[1];
    g.peer_next = g.side == CURFEW_SIDE_PARENT ? 2 : 1;

    curfew_channel_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.side = g.side;
    cfg.max_frame = g.max_frame;
    cfg.close_timeout_ms = (data[0] & 4) ? CURFEW_NEVER : 0;
    cfg.on_actor_created = on_actor_created;
    cfg.on_close = on_close;
    check_bad_arguments();
    cfg.side = (curfew_channel_side)2;
    CHECK(curfew_channel_create(sv[0], &cfg, &g.ch) == -EINVAL);
    CHECK(g.ch == NULL);
    cfg.side = g.side;
    CHECK(curfew_channel_create(sv[0], &cfg, &g.ch) == 0);
    check_state();
    CHECK(g.out_frames == 1); /* the greeting went out at once */

    if (!(data[0] & 2)) {
        static const unsigned char hello[HDR] = {0, 0, 0, 0, 1, 0, 0, 0,
                                                 0, 0, 0, 0, 0, 0, 0, 1};
        feed(hello, sizeof(hello));
        check_state();
    }

    const uint8_t *p = data + 2;
    size_t n = size - 2;
    while (n) {
        unsigned c = *p++;
        n--;
        if (c < 0x80) {
            size_t len = c + 1;
            if (len > n)
                len = n;
            feed(p, len);
            p += len;
            n -= len;
        } else {
            action((c >> 4) & 7, c & 15, &p, &n);
        }
        check_state();
    }

    curfew_channel_free(g.ch);
    CHECK(g.closes == 1);
    CHECK(g.nlive == 0);
    for (size_t i = 0; i < g.nrecs; i++)
        CHECK(g.recs[i].destroyed && !g.recs[i].live);
    /* what was flushed before the end must still be well-formed */
    drain();
    if (g.peer >= 0)
        close(g.peer);
    free(g.recs);
    free(g.ob);
    free(g.oids);
    memset(&g, 0, sizeof(g));
    return 0;
}
