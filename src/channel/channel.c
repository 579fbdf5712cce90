/* Channels and actors (contract section A).
 *
 * SPDX-License-Identifier: MIT
 *
 * Frames are 16 bytes of header (big-endian) and a payload:
 *   u32 len | u8 type | u8 flags (0) | u16 reserved (0) | u32 actor | u32 aux
 * docs/channel.md describes each type. Everything the peer sends is checked
 * against the state of the actor it names; anything out of place closes the
 * channel with -EPROTO (A1).
 *
 * Actors are freed only between callbacks ("reaping"): a callback may call
 * back into the channel, and whatever it finishes is finalised after it
 * returns, so no code ever holds a pointer to a freed actor. That is also
 * where on_destroy runs, managees before their manager (A2).
 */
#define _GNU_SOURCE
#include "channel/channel_internal.h"

#include <curfew/channel.h>
#include <curfew/core.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HDR 16
#define PROTO_VERSION 1
#define DEFAULT_MAX_FRAME (16u << 20)
#define DEFAULT_CLOSE_TIMEOUT_MS 10000
#define READ_CHUNK 65536
/* Managers above an actor, at most: bounds every walk of the tree, so a
 * peer cannot exhaust the stack with a deep chain of actors (A1). */
#define MAX_DEPTH 64

enum {
    F_HELLO = 1,
    F_CREATE = 2,
    F_MSG = 3,
    F_DESTROY = 4,
    F_DELETE = 5,
    F_WILLCLOSE = 6,
    F_WILLCLOSE_ACK = 7
};

static const char *const frame_names[] = {"",          "hello",        "create",
                                          "msg",       "destroy",      "delete",
                                          "willclose", "willclose-ack"};

const char *curfew__channel_crash_step;

struct curfew_actor {
    curfew_channel *ch;
    uint32_t id, kind;
    curfew_actor *manager;
    curfew_actor *first, *next, *prev; /* managees; siblings */
    curfew_actor_ops ops;
    void *arg;
    unsigned sent_destroy : 1, recv_destroy : 1, sent_delete : 1,
        recv_delete : 1, app_ready : 1, zombie : 1;
    int reason;
    curfew_actor *znext, *zprev; /* reap queue */
    unsigned depth;              /* managers above it */
};

struct curfew_channel {
    int fd;
    curfew_channel_side side;
    uint32_t max_frame;
    int32_t close_timeout_ms;
    curfew_channel_config cfg;

    unsigned char *out;
    size_t out_off, out_len, out_cap;

    unsigned char hdr[HDR];
    size_t hdr_got;
    unsigned char *pay;
    size_t pay_cap, pay_got;
    uint32_t pay_len;
    int in_payload;

    curfew_actor **tab; /* open addressing by id; NULL empty, TOMB gone */
    size_t tab_cap, tab_used, nactors;
    curfew_actor *top; /* top-level actors */
    uint32_t next_id, peer_last_id;

    int state;
    unsigned got_hello : 1, sent_willclose : 1, recv_willclose : 1,
        sent_ack : 1, recv_ack : 1, close_ready : 1, close_cb_due : 1,
        peer_eof : 1;
    int err;    /* the on_close value, once known */
    int io_err; /* a write failed inside a call: acted on at dispatch */
    int64_t close_deadline_ns;
    int depth; /* calls and callbacks under way */
    curfew_actor *zhead, *ztail;
    curfew_channel_stats st;
};

static curfew_actor tomb_;
#define TOMB (&tomb_)

/* ---- helpers ------------------------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static void step(curfew_channel *ch, int type, const char *dir)
{
    /* Test hook: a test names a step and this process dies there, as a
     * crash would take it (A6 tests kill a peer at every step). */
    const char *s = curfew__channel_crash_step;
    (void)ch;
    if (!s)
        return;
    size_t n = strlen(frame_names[type]);
    if (strncmp(s, frame_names[type], n) == 0 && s[n] == '-' &&
        strcmp(s + n + 1, dir) == 0)
        raise(SIGKILL);
}

/* ---- actor table ----------------------------------------------------------
 */

static size_t slot_of(uint32_t id, size_t cap)
{
    return (size_t)(id * 2654435761u) & (cap - 1);
}

static curfew_actor *lookup(curfew_channel *ch, uint32_t id)
{
    if (!ch->tab_cap || id == 0)
        return NULL;
    for (size_t i = slot_of(id, ch->tab_cap);;
         i = (i + 1) & (ch->tab_cap - 1)) {
        curfew_actor *a = ch->tab[i];
        if (!a)
            return NULL;
        if (a != TOMB && a->id == id)
            return a;
    }
}

static int tab_insert(curfew_channel *ch, curfew_actor *a)
{
    /* Half full at most, tombstones included; a rehash drops them. */
    if ((ch->tab_used + 1) * 2 > ch->tab_cap) {
        size_t cap = ch->tab_cap ? ch->tab_cap : 16;
        while ((ch->nactors + 1) * 4 > cap)
            cap *= 2;
        curfew_actor **t = calloc(cap, sizeof(*t));
        if (!t)
            return -ENOMEM;
        for (size_t i = 0; i < ch->tab_cap; i++) {
            curfew_actor *x = ch->tab[i];
            if (!x || x == TOMB)
                continue;
            size_t j = slot_of(x->id, cap);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = x;
        }
        free(ch->tab);
        ch->tab = t;
        ch->tab_cap = cap;
        ch->tab_used = ch->nactors;
    }
    size_t i = slot_of(a->id, ch->tab_cap);
    while (ch->tab[i] && ch->tab[i] != TOMB)
        i = (i + 1) & (ch->tab_cap - 1);
    if (!ch->tab[i])
        ch->tab_used++;
    ch->tab[i] = a;
    ch->nactors++;
    return 0;
}

static void tab_remove(curfew_channel *ch, curfew_actor *a)
{
    for (size_t i = slot_of(a->id, ch->tab_cap);;
         i = (i + 1) & (ch->tab_cap - 1)) {
        if (ch->tab[i] == a) {
            ch->tab[i] = TOMB;
            ch->nactors--;
            return;
        }
        if (!ch->tab[i])
            return;
    }
}

static void link_child(curfew_channel *ch, curfew_actor *a)
{
    curfew_actor **head = a->manager ? &a->manager->first : &ch->top;
    a->prev = NULL;
    a->next = *head;
    if (*head)
        (*head)->prev = a;
    *head = a;
}

static void unlink_child(curfew_channel *ch, curfew_actor *a)
{
    curfew_actor **head = a->manager ? &a->manager->first : &ch->top;
    if (a->prev)
        a->prev->next = a->next;
    else
        *head = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->next = a->prev = NULL;
}

/* ---- output ---------------------------------------------------------------
 */

static void flush(curfew_channel *ch)
{
    while (ch->out_off < ch->out_len && ch->fd >= 0 && !ch->io_err) {
        ssize_t n =
            send(ch->fd, ch->out + ch->out_off, ch->out_len - ch->out_off,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                ch->io_err = errno == EPIPE ? -ECONNRESET : -errno;
            break;
        }
        ch->out_off += (size_t)n;
    }
    if (ch->out_off == ch->out_len)
        ch->out_off = ch->out_len = 0;
}

static int queue(curfew_channel *ch, int type, uint32_t actor, uint32_t aux,
                 const void *p1, size_t l1, const void *p2, size_t l2)
{
    size_t len = l1 + l2;
    if (len > ch->max_frame)
        return -EMSGSIZE;
    size_t need = ch->out_len + HDR + len;
    if (need > ch->out_cap) {
        size_t cap = ch->out_cap ? ch->out_cap : 4096;
        while (cap < need)
            cap *= 2;
        unsigned char *o = realloc(ch->out, cap);
        if (!o)
            return -ENOMEM;
        ch->out = o;
        ch->out_cap = cap;
    }
    unsigned char *h = ch->out + ch->out_len;
    put32(h, (uint32_t)len);
    h[4] = (unsigned char)type;
    h[5] = 0;
    h[6] = h[7] = 0;
    put32(h + 8, actor);
    put32(h + 12, aux);
    if (l1)
        memcpy(h + HDR, p1, l1);
    if (l2)
        memcpy(h + HDR + l1, p2, l2);
    ch->out_len = need;
    ch->st.frames_out++;
    flush(ch);
    step(ch, type, "sent");
    return 0;
}

/* ---- finalising -----------------------------------------------------------
 */

static void zombify(curfew_channel *ch, curfew_actor *a, int reason)
{
    if (a->zombie)
        return;
    a->zombie = 1;
    a->reason = reason;
    a->znext = NULL;
    a->zprev = ch->ztail;
    if (ch->ztail)
        ch->ztail->znext = a;
    else
        ch->zhead = a;
    ch->ztail = a;
}

static int live_managees(const curfew_actor *a)
{
    for (const curfew_actor *c = a->first; c; c = c->next)
        if (!c->zombie)
            return 1;
    return 0;
}

static void progress_channel(curfew_channel *ch);
static void fail(curfew_channel *ch, int err);

/* Sends Delete once it is owed and allowed, and finalises the actor once
 * every Destroy either side sent has been answered (A3). */
static void progress(curfew_channel *ch, curfew_actor *a)
{
    if (a->zombie || ch->state == CURFEW_CHANNEL_CLOSED)
        return;
    if (a->recv_destroy && !a->sent_delete && a->app_ready &&
        !live_managees(a)) {
        if (queue(ch, F_DELETE, a->id, 0, NULL, 0, NULL, 0) == 0)
            a->sent_delete = 1;
        else
            fail(ch, -ENOMEM); /* a handshake must not stall silently */
    }
    if ((a->recv_destroy || a->sent_destroy) &&
        (!a->recv_destroy || a->sent_delete) &&
        (!a->sent_destroy || a->recv_delete))
        zombify(ch, a, a->reason);
}

/* Runs on_destroy for finished actors and frees them, then whatever that
 * allowed (a manager's Delete, the channel's close), until nothing is
 * left; then on_close. Only at depth 0, so no caller holds an actor. */
static void reap(curfew_channel *ch)
{
    ch->depth++;
    for (;;) {
        curfew_actor *a = ch->zhead;
        if (!a)
            break;
        /* Managees first: a zombie manager waits for its managees, which
         * are zombies too when the whole tree goes at once. */
        while (a->first)
            a = a->first;
        if (!a->zombie) {
            /* A live managee under a zombie manager: only on abort, where
             * every actor is a zombie; make it one. */
            zombify(ch, a, CURFEW_DESTROY_ABNORMAL);
            continue;
        }
        /* unlink a from the zombie queue: O(1), so freeing many actors
         * at once stays linear (A1: a peer cannot make us hang) */
        if (a->zprev)
            a->zprev->znext = a->znext;
        else
            ch->zhead = a->znext;
        if (a->znext)
            a->znext->zprev = a->zprev;
        else
            ch->ztail = a->zprev;
        curfew_actor *m = a->manager;
        unlink_child(ch, a);
        tab_remove(ch, a);
        if (a->ops.on_destroy)
            a->ops.on_destroy(a, (curfew_destroy_reason)a->reason, a->arg);
        free(a);
        ch->st.actors_live--;
        if (m)
            progress(ch, m);
        progress_channel(ch);
    }
    if (ch->close_cb_due && !ch->zhead) {
        ch->close_cb_due = 0;
        if (ch->cfg.on_close)
            ch->cfg.on_close(ch, ch->err, ch->cfg.arg);
    }
    ch->depth--;
}

static void enter(curfew_channel *ch)
{
    ch->depth++;
}

static void leave(curfew_channel *ch)
{
    if (--ch->depth == 0)
        reap(ch);
}

static void close_fd(curfew_channel *ch)
{
    if (ch->fd >= 0) {
        close(ch->fd);
        ch->fd = -1;
    }
}

/* The end, normal or not: every actor left goes with reason, then on_close
 * (at the next reap). */
static void finish(curfew_channel *ch, int err, int reason)
{
    if (ch->state == CURFEW_CHANNEL_CLOSED)
        return;
    ch->state = CURFEW_CHANNEL_CLOSED;
    ch->err = err;
    close_fd(ch);
    for (size_t i = 0; i < ch->tab_cap; i++) {
        curfew_actor *a = ch->tab[i];
        if (a && a != TOMB)
            zombify(ch, a, reason);
    }
    ch->close_cb_due = 1;
}

static void fail(curfew_channel *ch, int err)
{
    finish(ch, err, CURFEW_DESTROY_ABNORMAL);
}

/* WillClose (A5): answer once every actor is gone; done once every
 * WillClose either side sent has been answered and the output is out. */
static void progress_channel(curfew_channel *ch)
{
    if (ch->state != CURFEW_CHANNEL_CLOSING)
        return;
    if (ch->recv_willclose && !ch->sent_ack && ch->nactors == 0) {
        if (queue(ch, F_WILLCLOSE_ACK, 0, 0, NULL, 0, NULL, 0) == 0)
            ch->sent_ack = 1;
        else
            fail(ch, -ENOMEM);
    }
    if (ch->nactors == 0 && (!ch->recv_willclose || ch->sent_ack) &&
        (!ch->sent_willclose || ch->recv_ack))
        ch->close_ready = 1;
    /* Done once our output is out; or, with our side complete, when the
     * peer went away: it closes only after it has our answer, so what was
     * still on the way it no longer needed (A5). */
    if (ch->close_ready && (ch->out_len == 0 || ch->io_err || ch->peer_eof))
        finish(ch, 0, CURFEW_DESTROY_NORMAL_CLOSE);
}

static void start_closing(curfew_channel *ch)
{
    if (ch->state != CURFEW_CHANNEL_OPEN)
        return;
    ch->state = CURFEW_CHANNEL_CLOSING;
    if (ch->close_timeout_ms != CURFEW_NEVER)
        ch->close_deadline_ns =
            now_ns() + (int64_t)ch->close_timeout_ms * 1000000;
}

/* Destroy for the managees, deepest first, then for a (A4). */
static void destroy_tree(curfew_channel *ch, curfew_actor *a, int reason)
{
    int sub = reason == CURFEW_DESTROY_DELETED ? CURFEW_DESTROY_MANAGER_DELETED
                                               : reason;
    for (curfew_actor *c = a->first; c; c = c->next)
        if (!c->zombie)
            destroy_tree(ch, c, sub);
    if (a->sent_destroy || a->recv_destroy || a->zombie)
        return;
    if (queue(ch, F_DESTROY, a->id, (uint32_t)reason, NULL, 0, NULL, 0) == 0) {
        a->sent_destroy = 1;
        a->reason = reason;
    } else {
        fail(ch, -ENOMEM);
    }
}

/* ---- input ----------------------------------------------------------------
 */

static curfew_actor *actor_new(curfew_channel *ch, uint32_t id,
                               curfew_actor *manager, uint32_t kind)
{
    curfew_actor *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->ch = ch;
    a->id = id;
    a->kind = kind;
    a->manager = manager;
    a->depth = manager ? manager->depth + 1 : 0;
    if (tab_insert(ch, a) != 0) {
        free(a);
        return NULL;
    }
    link_child(ch, a);
    ch->st.actors_live++;
    return a;
}

static int peer_owns(const curfew_channel *ch, uint32_t id)
{
    /* The parent hands out odd ids, the child even ones. */
    return (id & 1) == (ch->side == CURFEW_SIDE_PARENT ? 0u : 1u);
}

static int on_create(curfew_channel *ch, uint32_t id, uint32_t mid,
                     const unsigned char *p, uint32_t len)
{
    if (len < 4 || id == 0 || !peer_owns(ch, id) || id <= ch->peer_last_id ||
        ch->recv_willclose || !ch->cfg.on_actor_created)
        return -EPROTO;
    curfew_actor *m = NULL;
    if (mid) {
        m = lookup(ch, mid);
        /* The peer cannot create under a manager it is destroying. */
        if (!m || m->zombie || m->recv_destroy || m->recv_delete ||
            m->depth + 1 >= MAX_DEPTH)
            return -EPROTO;
    }
    ch->peer_last_id = id;
    curfew_actor *a = actor_new(ch, id, m, get32(p));
    if (!a)
        return -ENOMEM;
    int r = ch->cfg.on_actor_created(ch, a, m, a->kind, p + 4, len - 4,
                                     ch->cfg.arg);
    if (r < 0 || !a->ops.on_message)
        return -EPROTO;
    /* Created while we destroy its manager or close: it goes too (the
     * peer did not know when it sent Create). */
    if (ch->sent_willclose)
        destroy_tree(ch, a, CURFEW_DESTROY_NORMAL_CLOSE);
    else if (m && m->sent_destroy)
        destroy_tree(ch, a,
                     m->reason == CURFEW_DESTROY_NORMAL_CLOSE
                         ? CURFEW_DESTROY_NORMAL_CLOSE
                         : CURFEW_DESTROY_MANAGER_DELETED);
    return 0;
}

static int handle_frame(curfew_channel *ch, const unsigned char *h,
                        const unsigned char *p)
{
    uint32_t len = get32(h);
    int type = h[4];
    uint32_t id = get32(h + 8), aux = get32(h + 12);
    if (h[5] || h[6] || h[7] || type < F_HELLO || type > F_WILLCLOSE_ACK)
        return -EPROTO;
    ch->st.frames_in++;
    step(ch, type, "received");
    if (!ch->got_hello) {
        if (type != F_HELLO || aux != PROTO_VERSION || id || len)
            return -EPROTO;
        ch->got_hello = 1;
        return 0;
    }
    /* After its WillClose answer the peer has nothing left to say. */
    if (type == F_HELLO || ch->recv_ack)
        return -EPROTO;
    if (type != F_CREATE && type != F_MSG && len)
        return -EPROTO;
    curfew_actor *a = NULL;
    switch (type) {
    case F_CREATE:
        return on_create(ch, id, aux, p, len);
    case F_MSG:
        a = lookup(ch, id);
        if (!a || a->zombie || a->recv_destroy || a->recv_delete)
            return -EPROTO;
        ch->st.messages_in++;
        a->ops.on_message(a, aux, p, len, a->arg);
        return 0;
    case F_DESTROY:
        a = lookup(ch, id);
        if (!a || a->zombie || a->recv_destroy || a->recv_delete || aux < 1 ||
            aux > CURFEW_DESTROY_NORMAL_CLOSE)
            return -EPROTO;
        a->recv_destroy = 1;
        if (a->sent_destroy) {
            a->app_ready = 1; /* crossed: both asked, both answer */
        } else {
            a->reason = (int)aux;
            int r = CURFEW_DONE;
            if (a->ops.on_destroy_request)
                r = a->ops.on_destroy_request(a, (curfew_destroy_reason)aux,
                                              a->arg);
            if (r != CURFEW_PENDING)
                a->app_ready = 1;
        }
        progress(ch, a);
        return 0;
    case F_DELETE:
        a = lookup(ch, id);
        if (!a || a->zombie || !a->sent_destroy || a->recv_delete || aux)
            return -EPROTO;
        a->recv_delete = 1;
        /* The peer answers a manager only after all its managees, and
         * those answers came first: none can be alive here (A4). */
        if (live_managees(a))
            return -EPROTO;
        progress(ch, a);
        return 0;
    case F_WILLCLOSE:
        if (ch->recv_willclose || id || aux)
            return -EPROTO;
        ch->recv_willclose = 1;
        start_closing(ch);
        progress_channel(ch);
        return 0;
    case F_WILLCLOSE_ACK:
        if (!ch->sent_willclose || ch->recv_ack || id || aux)
            return -EPROTO;
        /* The peer answers only once it has no actors left, so every one
         * of ours has finished its handshake (A5). */
        for (size_t i = 0; i < ch->tab_cap; i++) {
            curfew_actor *x = ch->tab[i];
            if (x && x != TOMB && !x->zombie)
                return -EPROTO;
        }
        ch->recv_ack = 1;
        progress_channel(ch);
        return 0;
    default:
        return -EPROTO;
    }
}

/* Feeds bytes to the frame decoder. Returns 0 or the error that closes the
 * channel. Stops early once the channel closed. */
static int feed(curfew_channel *ch, const unsigned char *b, size_t n)
{
    while (n && ch->state != CURFEW_CHANNEL_CLOSED) {
        if (!ch->in_payload) {
            size_t k = HDR - ch->hdr_got;
            if (k > n)
                k = n;
            memcpy(ch->hdr + ch->hdr_got, b, k);
            ch->hdr_got += k;
            b += k;
            n -= k;
            if (ch->hdr_got < HDR)
                return 0;
            ch->pay_len = get32(ch->hdr);
            if (ch->pay_len > ch->max_frame)
                return -EPROTO;
            ch->in_payload = 1;
            ch->pay_got = 0;
        }
        size_t k = ch->pay_len - ch->pay_got;
        if (k > n)
            k = n;
        if (ch->pay_got + k > ch->pay_cap) {
            /* Grow with what arrives, not with what the header claims. */
            size_t cap = ch->pay_cap ? ch->pay_cap : 4096;
            while (cap < ch->pay_got + k)
                cap *= 2;
            if (cap > ch->pay_len)
                cap = ch->pay_len;
            unsigned char *np = realloc(ch->pay, cap);
            if (!np)
                return -ENOMEM;
            ch->pay = np;
            ch->pay_cap = cap;
        }
        if (k)
            memcpy(ch->pay + ch->pay_got, b, k);
        ch->pay_got += k;
        b += k;
        n -= k;
        if (ch->pay_got < ch->pay_len)
            return 0;
        ch->in_payload = 0;
        ch->hdr_got = 0;
        int r = handle_frame(ch, ch->hdr, ch->pay);
        if (r)
            return r;
    }
    return 0;
}

int curfew__channel_feed(curfew_channel *ch, const void *data, size_t len)
{
    enter(ch);
    int r = feed(ch, data, len);
    if (r)
        fail(ch, r);
    leave(ch);
    return r;
}

/* ---- public ---------------------------------------------------------------
 */

int curfew_channel_create(int fd, const curfew_channel_config *cfg,
                          curfew_channel **out)
{
    if (!out || fd < 0)
        return -EINVAL;
    *out = NULL;
    curfew_channel_config c = {0};
    if (cfg)
        c = *cfg;
    if ((unsigned)c.side > 1u ||
        (c.close_timeout_ms < 0 && c.close_timeout_ms != CURFEW_NEVER))
        return -EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    curfew_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    ch->fd = fd;
    ch->cfg = c;
    ch->side = c.side;
    ch->max_frame = c.max_frame ? c.max_frame : DEFAULT_MAX_FRAME;
    ch->close_timeout_ms =
        c.close_timeout_ms ? c.close_timeout_ms : DEFAULT_CLOSE_TIMEOUT_MS;
    ch->next_id = c.side == CURFEW_SIDE_PARENT ? 1 : 2;
    ch->state = CURFEW_CHANNEL_OPEN;
    int r = queue(ch, F_HELLO, 0, PROTO_VERSION, NULL, 0, NULL, 0);
    if (r) {
        free(ch->out);
        free(ch);
        return r;
    }
    *out = ch;
    return 0;
}

int curfew_channel_fd(const curfew_channel *ch)
{
    return ch ? ch->fd : -EINVAL;
}

int curfew_channel_events(const curfew_channel *ch)
{
    if (!ch || ch->fd < 0)
        return 0;
    return (ch->peer_eof ? 0 : POLLIN) | (ch->out_len ? POLLOUT : 0);
}

int curfew_channel_timeout_ms(const curfew_channel *ch)
{
    if (!ch)
        return -1;
    if (ch->io_err || ch->close_cb_due ||
        (ch->state == CURFEW_CHANNEL_CLOSING && ch->close_ready &&
         !ch->out_len))
        return 0;
    if (ch->state != CURFEW_CHANNEL_CLOSING || !ch->close_deadline_ns)
        return -1;
    int64_t left = (ch->close_deadline_ns - now_ns() + 999999) / 1000000;
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

int curfew_channel_dispatch(curfew_channel *ch)
{
    if (!ch)
        return -EINVAL;
    if (ch->depth)
        return -EPERM;
    enter(ch);
    if (ch->state != CURFEW_CHANNEL_CLOSED) {
        flush(ch);
        int reads = 0;
        /* Read even after a failed write: what the peer sent before it went
         * away is delivered before the channel ends (A3). */
        while (!ch->peer_eof && ch->state != CURFEW_CHANNEL_CLOSED &&
               (reads++ < 16 || (ch->io_err && reads < 16384))) {
            unsigned char buf[READ_CHUNK];
            ssize_t n = recv(ch->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    ch->io_err = errno == ECONNRESET ? -ECONNRESET : -errno;
                break;
            }
            if (n == 0) {
                /* After its WillClose answer the peer may close at once:
                 * what is left is ours to finish. Otherwise the peer is
                 * gone; mid-frame that is a truncated frame (A1), between
                 * frames a crash or an unannounced close. */
                if ((ch->recv_ack || ch->close_ready) && !ch->hdr_got &&
                    !ch->in_payload)
                    ch->peer_eof = 1;
                else
                    fail(ch,
                         ch->hdr_got || ch->in_payload ? -EPROTO : -ECONNRESET);
                break;
            }
            int r = feed(ch, buf, (size_t)n);
            if (r) {
                fail(ch, r);
                break;
            }
        }
        if (ch->state != CURFEW_CHANNEL_CLOSED) {
            flush(ch);
            if (ch->io_err && !ch->close_ready)
                fail(ch, ch->io_err);
        }
        progress_channel(ch);
        if (ch->state == CURFEW_CHANNEL_CLOSING && ch->close_deadline_ns &&
            now_ns() >= ch->close_deadline_ns)
            fail(ch, -ETIMEDOUT);
    }
    leave(ch);
    return ch->state == CURFEW_CHANNEL_CLOSED && !ch->close_cb_due;
}

int curfew_channel_close(curfew_channel *ch)
{
    if (!ch)
        return -EINVAL;
    if (ch->state != CURFEW_CHANNEL_OPEN)
        return -EALREADY;
    enter(ch);
    start_closing(ch);
    for (curfew_actor *a = ch->top; a; a = a->next)
        if (!a->zombie)
            destroy_tree(ch, a, CURFEW_DESTROY_NORMAL_CLOSE);
    if (queue(ch, F_WILLCLOSE, 0, 0, NULL, 0, NULL, 0) == 0)
        ch->sent_willclose = 1;
    else
        fail(ch, -ENOMEM);
    progress_channel(ch);
    leave(ch);
    return 0;
}

int curfew_channel_state(const curfew_channel *ch)
{
    return ch ? ch->state : -EINVAL;
}

void curfew_channel_free(curfew_channel *ch)
{
    if (!ch || ch->depth)
        return;
    enter(ch);
    fail(ch, -ECANCELED);
    leave(ch);
    free(ch->tab);
    free(ch->out);
    free(ch->pay);
    free(ch);
}

size_t curfew_channel_pending_bytes(const curfew_channel *ch)
{
    return ch ? ch->out_len - ch->out_off : 0;
}

int curfew_channel_stats_get(const curfew_channel *ch,
                             curfew_channel_stats *out)
{
    if (!ch || !out)
        return -EINVAL;
    *out = ch->st;
    return 0;
}

int curfew_actor_create(curfew_channel *ch, curfew_actor *manager,
                        uint32_t kind, const void *data, size_t len,
                        const curfew_actor_ops *ops, void *arg,
                        curfew_actor **out)
{
    if (out)
        *out = NULL;
    if (!ch || !ops || !ops->on_message || (len && !data) ||
        (manager && manager->ch != ch))
        return -EINVAL;
    if (ch->state != CURFEW_CHANNEL_OPEN ||
        (manager &&
         (manager->zombie || manager->sent_destroy || manager->recv_destroy)))
        return -EPIPE;
    if (len > ch->max_frame - 4)
        return -EMSGSIZE;
    if (ch->next_id > UINT32_MAX - 2)
        return -ENOMEM; /* ids are never reused */
    if (manager && manager->depth + 1 >= MAX_DEPTH)
        return -EINVAL;
    enter(ch);
    curfew_actor *a = actor_new(ch, ch->next_id, manager, kind);
    int r = -ENOMEM;
    if (a) {
        unsigned char k[4];
        put32(k, kind);
        r = queue(ch, F_CREATE, a->id, manager ? manager->id : 0, k, 4, data,
                  len);
        if (r) {
            unlink_child(ch, a);
            tab_remove(ch, a);
            ch->st.actors_live--;
            free(a);
        } else {
            ch->next_id += 2;
            a->ops = *ops;
            a->arg = arg;
            if (out)
                *out = a;
        }
    }
    leave(ch);
    return r;
}

int curfew_actor_set_ops(curfew_actor *a, const curfew_actor_ops *ops,
                         void *arg)
{
    if (!a || !ops || !ops->on_message)
        return -EINVAL;
    a->ops = *ops;
    a->arg = arg;
    return 0;
}

int curfew_actor_send(curfew_actor *a, uint32_t type, const void *data,
                      size_t len)
{
    if (!a || (len && !data))
        return -EINVAL;
    curfew_channel *ch = a->ch;
    if (ch->state == CURFEW_CHANNEL_CLOSED || a->zombie || a->sent_destroy ||
        a->sent_delete)
        return -EPIPE;
    int r = queue(ch, F_MSG, a->id, type, data, len, NULL, 0);
    if (r == 0)
        ch->st.messages_out++;
    return r;
}

int curfew_actor_destroy(curfew_actor *a)
{
    if (!a)
        return -EINVAL;
    curfew_channel *ch = a->ch;
    if (a->zombie || a->sent_destroy || a->recv_destroy)
        return -EALREADY;
    if (ch->state == CURFEW_CHANNEL_CLOSED)
        return -EPIPE;
    enter(ch);
    destroy_tree(ch, a, CURFEW_DESTROY_DELETED);
    progress(ch, a);
    leave(ch);
    return 0;
}

int curfew_actor_delete(curfew_actor *a)
{
    if (!a)
        return -EINVAL;
    if (!a->recv_destroy)
        return -EINVAL;
    if (a->app_ready || a->sent_delete || a->zombie)
        return -EALREADY;
    curfew_channel *ch = a->ch;
    enter(ch);
    a->app_ready = 1;
    progress(ch, a);
    leave(ch);
    return 0;
}

int curfew_actor_state(const curfew_actor *a)
{
    if (!a)
        return -EINVAL;
    if (a->zombie)
        return CURFEW_ACTOR_DEAD;
    if (a->recv_destroy && a->sent_destroy)
        return a->sent_delete ? CURFEW_ACTOR_DELETE_SENT
                              : CURFEW_ACTOR_DESTROYING;
    if (a->recv_destroy)
        return CURFEW_ACTOR_DELETING;
    if (a->sent_destroy)
        return CURFEW_ACTOR_DESTROYING;
    return CURFEW_ACTOR_ALIVE;
}

uint32_t curfew_actor_id(const curfew_actor *a)
{
    return a ? a->id : 0;
}

uint32_t curfew_actor_kind(const curfew_actor *a)
{
    return a ? a->kind : 0;
}

curfew_actor *curfew_actor_manager(const curfew_actor *a)
{
    return a ? a->manager : NULL;
}

curfew_channel *curfew_actor_channel(const curfew_actor *a)
{
    return a ? a->ch : NULL;
}
