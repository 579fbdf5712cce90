/* Helpers shared by the channel tests; see ch_util.h.
 *
 * SPDX-License-Identifier: MIT
 */
#include "ch_util.h"

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

void fr_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

uint32_t fr_get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
}

void fr_header(unsigned char *h, uint32_t len, unsigned type, unsigned flags,
               unsigned reserved, uint32_t actor, uint32_t aux)
{
    fr_put32(h, len);
    h[4] = (unsigned char)type;
    h[5] = (unsigned char)flags;
    h[6] = (unsigned char)(reserved >> 8);
    h[7] = (unsigned char)reserved;
    fr_put32(h + 8, actor);
    fr_put32(h + 12, aux);
}

void raw_send(int fd, const void *p, size_t n)
{
    const unsigned char *b = p;
    int64_t end = th_now_ms() + 5000;
    while (n) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            CHECK(th_now_ms() < end);
            struct pollfd p1 = {.fd = fd, .events = POLLOUT};
            (void)poll(&p1, 1, 10);
            continue;
        }
        if (k < 0)
            th_fail(__FILE__, __LINE__, "send: %s", strerror(errno));
        b += k;
        n -= (size_t)k;
    }
}

void raw_frame(int fd, unsigned type, uint32_t actor, uint32_t aux,
               const void *payload, size_t len)
{
    unsigned char h[FR_HDR];
    fr_header(h, (uint32_t)len, type, 0, 0, actor, aux);
    raw_send(fd, h, sizeof h);
    if (len)
        raw_send(fd, payload, len);
}

void raw_hello(int fd)
{
    raw_frame(fd, FR_HELLO, 0, FR_VERSION, NULL, 0);
}

void raw_create(int fd, uint32_t id, uint32_t manager, uint32_t kind)
{
    unsigned char k[4];
    fr_put32(k, kind);
    raw_frame(fd, FR_CREATE, id, manager, k, sizeof k);
}

size_t raw_drain(int fd)
{
    size_t total = 0;
    for (;;) {
        unsigned char buf[65536];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return total;
        total += (size_t)n;
    }
}

void ch_socketpair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        th_fail(__FILE__, __LINE__, "socketpair: %s", strerror(errno));
}

void ch_inheritable(int fd)
{
    CHECK_EQ(fcntl(fd, F_SETFD, 0), 0);
}

int ch_pump(curfew_channel *const *chs, int n, ch_pred done, void *arg,
            int64_t ms)
{
    int64_t end = th_now_ms() + ms;
    for (;;) {
        for (int i = 0; i < n; i++) {
            int r = curfew_channel_dispatch(chs[i]);
            CHECK(r == 0 || r == 1);
        }
        if (done && done(arg))
            return 1;
        int64_t left = end - th_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p[8];
        CHECK(n <= 8);
        int t = left > 10 ? 10 : (int)left;
        for (int i = 0; i < n; i++) {
            p[i].fd = curfew_channel_fd(chs[i]);
            p[i].events = (short)curfew_channel_events(chs[i]);
            p[i].revents = 0;
            int ct = curfew_channel_timeout_ms(chs[i]);
            CHECK(ct >= -1);
            if (ct >= 0 && ct < t)
                t = ct;
        }
        (void)poll(p, (nfds_t)n, t);
    }
}

void ch_settle(curfew_channel *const *chs, int n)
{
    int quiet = 0;
    int64_t end = th_now_ms() + 2000;
    while (quiet < 3 && th_now_ms() < end) {
        for (int i = 0; i < n; i++)
            (void)curfew_channel_dispatch(chs[i]);
        struct pollfd p[8];
        CHECK(n <= 8);
        int busy = 0;
        for (int i = 0; i < n; i++) {
            p[i].fd = curfew_channel_fd(chs[i]);
            p[i].events = POLLIN;
            p[i].revents = 0;
            if (curfew_channel_pending_bytes(chs[i]) ||
                curfew_channel_timeout_ms(chs[i]) == 0)
                busy = 1;
        }
        if (poll(p, (nfds_t)n, 0) > 0)
            for (int i = 0; i < n; i++)
                if (p[i].fd >= 0 && p[i].revents)
                    busy = 1;
        quiet = busy ? 0 : quiet + 1;
    }
}

int ch_run_until_closed(curfew_channel *ch, int64_t ms)
{
    int64_t end = th_now_ms() + ms;
    for (;;) {
        int r = curfew_channel_dispatch(ch);
        if (r != 0)
            return r;
        int64_t left = end - th_now_ms();
        if (left <= 0)
            return r;
        int t = curfew_channel_timeout_ms(ch);
        if (t < 0 || t > left)
            t = (int)left;
        if (t > 50)
            t = 50;
        struct pollfd p = {.fd = curfew_channel_fd(ch),
                           .events = (short)curfew_channel_events(ch)};
        (void)poll(&p, 1, t);
    }
}

/* ---- actor recorder ----------------------------------------------------- */

static int order_counter;

int ch_next_order(void)
{
    return ++order_counter;
}

static void rec_message(curfew_actor *a, uint32_t type, const void *data,
                        size_t len, void *arg)
{
    ch_rec *r = arg;
    CHECK(r->a == a);
    CHECK_EQ(r->destroyed, 0);
    r->msgs++;
    r->last_type = type;
    if (type == REC_SEQ) {
        CHECK_EQ(len, 4);
        /* In order and none missing (A3). */
        CHECK_EQ(fr_get32(data), r->next_seq);
        r->next_seq++;
    }
    if (r->probe)
        r->probe_msg = curfew_channel_dispatch(r->probe);
}

static int rec_request(curfew_actor *a, curfew_destroy_reason reason, void *arg)
{
    ch_rec *r = arg;
    CHECK(r->a == a);
    CHECK_EQ(r->destroyed, 0);
    r->requests++;
    r->req_reason = (int)reason;
    CHECK_EQ(curfew_actor_state(a), CURFEW_ACTOR_DELETING);
    if (r->probe)
        r->probe_req = curfew_channel_dispatch(r->probe);
    if (r->on_req)
        r->on_req(r);
    return r->req_result;
}

static void rec_destroy(curfew_actor *a, curfew_destroy_reason reason,
                        void *arg)
{
    ch_rec *r = arg;
    CHECK(r->a == a);
    r->destroyed++;
    r->reason = (int)reason;
    r->order = ch_next_order();
    r->msgs_at_destroy = r->msgs;
    r->state_in_destroy = curfew_actor_state(a);
    r->send_in_destroy = curfew_actor_send(a, 1, NULL, 0);
    if (r->probe)
        r->probe_destroy = curfew_channel_dispatch(r->probe);
    r->a = NULL;
}

const curfew_actor_ops ch_rec_ops = {.on_message = rec_message,
                                     .on_destroy_request = rec_request,
                                     .on_destroy = rec_destroy};

int ch_rec_send_seq(ch_rec *r)
{
    unsigned char b[4];
    fr_put32(b, r->sent_seq);
    int rc = curfew_actor_send(r->a, REC_SEQ, b, sizeof b);
    if (rc == 0)
        r->sent_seq++;
    return rc;
}

int ch_rec_create(curfew_channel *ch, ch_rec *manager, uint32_t kind, ch_rec *r)
{
    int rc = curfew_actor_create(ch, manager ? manager->a : NULL, kind, NULL, 0,
                                 &ch_rec_ops, r, &r->a);
    if (rc == 0)
        r->id = curfew_actor_id(r->a);
    return rc;
}

/* ---- channel recorder --------------------------------------------------- */

static int side_created(curfew_channel *ch, curfew_actor *a,
                        curfew_actor *manager, uint32_t kind, const void *data,
                        size_t len, void *arg)
{
    ch_side *s = arg;
    (void)data;
    (void)len;
    CHECK(s->ch == NULL || s->ch == ch);
    CHECK(s->npeer < CH_SIDE_PEERS);
    CHECK(curfew_actor_channel(a) == ch);
    CHECK(curfew_actor_manager(a) == manager);
    CHECK_EQ(curfew_actor_kind(a), kind);
    int i = s->npeer++;
    ch_rec *r = &s->peer[i];
    memset(r, 0, sizeof *r);
    r->a = a;
    r->id = curfew_actor_id(a);
    r->req_result = s->req_result;
    s->kinds[i] = kind;
    s->managers[i] = manager;
    s->states_at_create[i] = curfew_channel_state(ch);
    if (s->probe)
        s->probe_created = curfew_channel_dispatch(s->probe);
    if (s->set_ops)
        CHECK_EQ(curfew_actor_set_ops(a, &ch_rec_ops, r), 0);
    return s->accept;
}

static void side_closed(curfew_channel *ch, int err, void *arg)
{
    ch_side *s = arg;
    CHECK(s->ch == NULL || s->ch == ch);
    s->closes++;
    s->close_err = err;
    s->close_order = ch_next_order();
    curfew_channel_stats st;
    CHECK_EQ(curfew_channel_stats_get(ch, &st), 0);
    s->actors_at_close = (int)st.actors_live;
    CHECK_EQ(curfew_channel_state(ch), CURFEW_CHANNEL_CLOSED);
    if (s->probe)
        s->probe_close = curfew_channel_dispatch(s->probe);
}

void ch_side_init(ch_side *s, curfew_channel_config *cfg,
                  curfew_channel_side side)
{
    memset(s, 0, sizeof *s);
    s->set_ops = 1;
    memset(cfg, 0, sizeof *cfg);
    cfg->side = side;
    cfg->on_actor_created = side_created;
    cfg->on_close = side_closed;
    cfg->arg = s;
}

ch_rec *ch_side_peer(ch_side *s, uint32_t id)
{
    for (int i = 0; i < s->npeer; i++)
        if (s->peer[i].id == id)
            return &s->peer[i];
    return NULL;
}

void ch_pair(ch_side *a, ch_side *b, const curfew_channel_config *tweak_a,
             const curfew_channel_config *tweak_b)
{
    int sv[2];
    ch_socketpair(sv);
    curfew_channel_config ca, cb;
    ch_side_init(a, &ca, CURFEW_SIDE_PARENT);
    ch_side_init(b, &cb, CURFEW_SIDE_CHILD);
    if (tweak_a) {
        ca.max_frame = tweak_a->max_frame;
        ca.close_timeout_ms = tweak_a->close_timeout_ms;
    }
    if (tweak_b) {
        cb.max_frame = tweak_b->max_frame;
        cb.close_timeout_ms = tweak_b->close_timeout_ms;
    }
    CHECK_EQ(curfew_channel_create(sv[0], &ca, &a->ch), 0);
    CHECK_EQ(curfew_channel_create(sv[1], &cb, &b->ch), 0);
    curfew_channel *both[2] = {a->ch, b->ch};
    ch_settle(both, 2);
    CHECK_EQ(curfew_channel_state(a->ch), CURFEW_CHANNEL_OPEN);
    CHECK_EQ(curfew_channel_state(b->ch), CURFEW_CHANNEL_OPEN);
}
