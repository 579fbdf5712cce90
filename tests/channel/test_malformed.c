/* Malformed input from a peer (CONTRACT.md A1): raw bytes written into the
 * other end of a socket pair. Every case closes the channel with -EPROTO,
 * the peer being treated as crashed: every actor gets on_destroy
 * (ABNORMAL unless its handshake had already finished) exactly once,
 * on_close(-EPROTO) runs once, and nothing crashes, hangs or leaks (the
 * suite also runs under ASan).
 *
 * The channel under test is the parent side; the raw peer plays the child
 * (its actor ids are even).
 *
 * SPDX-License-Identifier: MIT
 */
#include "ch_util.h"
#include "harness.h"

#include <curfew/channel.h>
#include <curfew/core.h>

#include <errno.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CH_SANITIZED 1
#endif
#endif
#ifndef CH_SANITIZED
#define CH_SANITIZED 0
#endif

struct bad {
    ch_side s;
    int raw;
    ch_rec r1, r2;           /* ours: r1 (id 1) top-level, r2 (id 3) under r1 */
    const ch_rec *normal[4]; /* actors whose handshake finished first */
    int nnormal;
};

static void bad_open_cfg(struct bad *b, uint32_t max_frame, int with_cb,
                         int32_t close_timeout_ms)
{
    memset(b, 0, sizeof *b);
    int sv[2];
    ch_socketpair(sv);
    curfew_channel_config cfg;
    ch_side_init(&b->s, &cfg, CURFEW_SIDE_PARENT);
    cfg.max_frame = max_frame;
    cfg.close_timeout_ms = close_timeout_ms;
    if (!with_cb)
        cfg.on_actor_created = NULL;
    CHECK_EQ(curfew_channel_create(sv[0], &cfg, &b->s.ch), 0);
    b->raw = sv[1];
    CHECK_EQ(ch_rec_create(b->s.ch, NULL, 1, &b->r1), 0);
    CHECK_EQ(ch_rec_create(b->s.ch, &b->r1, 2, &b->r2), 0);
    CHECK_EQ(b->r1.id, 1);
    CHECK_EQ(b->r2.id, 3);
}

static void bad_open(struct bad *b)
{
    bad_open_cfg(b, 0, 1, 5000);
    raw_hello(b->raw);
}

/* A few loop turns without waiting for quiet (the output may be stuck on
 * purpose). */
static void bad_turns_ms(struct bad *b, int n, int ms)
{
    for (int i = 0; i < n; i++) {
        (void)curfew_channel_dispatch(b->s.ch);
        struct pollfd p = {.fd = curfew_channel_fd(b->s.ch), .events = POLLIN};
        (void)poll(&p, 1, ms);
    }
}

static void bad_turns(struct bad *b, int n)
{
    bad_turns_ms(b, n, 5);
}

/* What was written so far was fine: the channel is still up. */
static void bad_still_open(struct bad *b)
{
    bad_turns(b, 4);
    CHECK_EQ(b->s.closes, 0);
    CHECK(curfew_channel_state(b->s.ch) != CURFEW_CHANNEL_CLOSED);
}

static int is_normal(const struct bad *b, const ch_rec *r)
{
    for (int i = 0; i < b->nnormal; i++)
        if (b->normal[i] == r)
            return 1;
    return 0;
}

static void bad_check_rec(const struct bad *b, const ch_rec *r)
{
    CHECK_EQ(r->destroyed, 1);
    CHECK(r->a == NULL);
    if (is_normal(b, r))
        CHECK(r->reason != CURFEW_DESTROY_ABNORMAL);
    else
        CHECK_EQ(r->reason, CURFEW_DESTROY_ABNORMAL);
}

/* The channel closes by itself with err; then every check of A1. */
static void bad_expect(struct bad *b, int err)
{
    int64_t t0 = th_now_ms();
    CHECK_EQ(ch_run_until_closed(b->s.ch, 3000), 1);
    CHECK(th_now_ms() - t0 < 2500); /* promptly, not by a timeout */
    CHECK_EQ(b->s.closes, 1);
    CHECK_EQ(b->s.close_err, err);
    CHECK_EQ(b->s.actors_at_close, 0);
    CHECK_EQ(curfew_channel_state(b->s.ch), CURFEW_CHANNEL_CLOSED);
    bad_check_rec(b, &b->r1);
    bad_check_rec(b, &b->r2);
    CHECK(b->r2.order < b->r1.order); /* managee first, even here (A2) */
    for (int i = 0; i < b->s.npeer; i++)
        if (b->s.set_ops)
            bad_check_rec(b, &b->s.peer[i]);
    CHECK(b->r1.order < b->s.close_order);
    /* Closed for good: more dispatching changes nothing. */
    for (int i = 0; i < 3; i++)
        CHECK_EQ(curfew_channel_dispatch(b->s.ch), 1);
    CHECK_EQ(
        curfew_actor_create(b->s.ch, NULL, 1, NULL, 0, &ch_rec_ops, NULL, NULL),
        -EPIPE);
    curfew_channel_free(b->s.ch);
    b->s.ch = NULL;
    CHECK_EQ(b->s.closes, 1);
    CHECK_EQ(b->r1.destroyed, 1);
    if (b->raw >= 0)
        close(b->raw);
    b->raw = -1;
}

static void bad_expect_eproto(struct bad *b)
{
    bad_expect(b, -EPROTO);
}

/* The peer stops writing: a plain end of stream (shutdown, so that no
 * connection reset from its unread input gets in the way). */
static void raw_eof(struct bad *b)
{
    CHECK_EQ(shutdown(b->raw, SHUT_WR), 0);
}

static void raw_header(int fd, uint32_t len, unsigned type, unsigned flags,
                       unsigned reserved, uint32_t actor, uint32_t aux)
{
    unsigned char h[FR_HDR];
    fr_header(h, len, type, flags, reserved, actor, aux);
    raw_send(fd, h, sizeof h);
}

static void raw_msg(int fd, uint32_t actor, uint32_t type, uint32_t seq)
{
    unsigned char p[4];
    fr_put32(p, seq);
    raw_frame(fd, FR_MSG, actor, type, p, sizeof p);
}

/* ---- framing ------------------------------------------------------------ */

TEST(ch_bad_unknown_type)
{
    /* A1: an unknown frame type (0, one past the last, 255). */
    static const unsigned types[] = {0, FR_ACK + 1, 255};
    for (int i = 0; i < 3; i++) {
        struct bad b;
        bad_open(&b);
        bad_still_open(&b);
        raw_frame(b.raw, types[i], 1, 0, NULL, 0);
        bad_expect_eproto(&b);
    }
}

TEST(ch_bad_flags_or_reserved)
{
    /* A1: flags and reserved must be zero. The same MSG with them zero is
     * delivered, so the bits alone make the difference. */
    static const unsigned flags[] = {1, 0x80, 0, 0};
    static const unsigned reserved[] = {0, 0, 1, 0x100};
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open(&b);
        raw_msg(b.raw, 1, REC_SEQ, 0);
        bad_still_open(&b);
        CHECK_EQ(b.r1.msgs, 1);
        unsigned char p[4];
        fr_put32(p, 1);
        raw_header(b.raw, 4, FR_MSG, flags[i], reserved[i], 1, REC_SEQ);
        raw_send(b.raw, p, 4);
        bad_expect_eproto(&b);
        CHECK_EQ(b.r1.msgs, 1); /* not delivered */
    }
}

TEST(ch_bad_frame_over_max)
{
    /* A1: with max_frame = 64, a 64-byte payload is delivered and a header
     * announcing 65 bytes closes the channel at once, before any payload
     * byte arrived. */
    struct bad b;
    bad_open_cfg(&b, 64, 1, 5000);
    raw_hello(b.raw);
    unsigned char p[64];
    memset(p, 0xab, sizeof p);
    raw_frame(b.raw, FR_MSG, 1, 5, p, 64);
    bad_still_open(&b);
    CHECK_EQ(b.r1.msgs, 1);
    raw_header(b.raw, 65, FR_MSG, 0, 0, 1, 5);
    bad_expect_eproto(&b);
    CHECK_EQ(b.r1.msgs, 1);
}

TEST(ch_bad_huge_length)
{
    /* A1: a header declaring 0xFFFFFFF0 bytes is refused by the default
     * 16 MiB limit on its 16 bytes alone, with no payload and no EOF;
     * exactly 16 MiB is within the limit. */
    struct bad b;
    bad_open(&b);
    bad_still_open(&b);
    raw_header(b.raw, 0xFFFFFFF0u, FR_MSG, 0, 0, 1, 5);
    bad_expect_eproto(&b);

    bad_open(&b);
    raw_header(b.raw, 16u << 20, FR_MSG, 0, 0, 1, 5);
    unsigned char chunk[1000] = {0};
    raw_send(b.raw, chunk, sizeof chunk);
    bad_still_open(&b);
    CHECK_EQ(b.r1.msgs, 0); /* still waiting for the rest */
    raw_header(b.raw, 0, 0, 0, 0, 0, 0);
    bad_still_open(&b); /* those 16 bytes are payload */
    raw_eof(&b);
    bad_expect_eproto(&b); /* truncated */

    bad_open(&b);
    raw_header(b.raw, (16u << 20) + 1, FR_MSG, 0, 0, 1, 5);
    bad_expect_eproto(&b);
}

static size_t vm_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    unsigned long pages = 0;
    CHECK_EQ(fscanf(f, "%lu", &pages), 1);
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

TEST(ch_bad_huge_length_memory_bounded)
{
    /* A1: even with no limit to speak of (max_frame = UINT32_MAX), a
     * header declaring 0xFFFFFFF0 bytes makes the receiver allocate for
     * what arrives, not for what is declared: 4 MiB of payload under an
     * address-space limit of 256 MiB more than now (not under sanitizers,
     * which reserve terabytes). The truncated frame then ends with -EPROTO,
     * not -ENOMEM. */
    struct rlimit old;
    CHECK_EQ(getrlimit(RLIMIT_AS, &old), 0);
    struct bad b;
    bad_open_cfg(&b, UINT32_MAX, 1, 5000);
    raw_hello(b.raw);
    bad_still_open(&b);
    if (!CH_SANITIZED) {
        struct rlimit lim = old;
        lim.rlim_cur = vm_bytes() + (256u << 20);
        if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < lim.rlim_cur)
            lim.rlim_cur = old.rlim_cur;
        CHECK_EQ(setrlimit(RLIMIT_AS, &lim), 0);
    }
    raw_header(b.raw, 0xFFFFFFF0u, FR_MSG, 0, 0, 1, 5);
    static unsigned char chunk[65536];
    for (int i = 0; i < 64; i++) {
        raw_send(b.raw, chunk, sizeof chunk);
        bad_turns(&b, 1);
    }
    bad_still_open(&b);
    CHECK_EQ(b.r1.msgs, 0);
    raw_eof(&b);
    bad_expect_eproto(&b);
    CHECK_EQ(setrlimit(RLIMIT_AS, &old), 0);
}

TEST(ch_bad_truncated_then_eof)
{
    /* A1: the peer goes away in the middle of a frame: inside the header,
     * inside the payload, or right after a header announcing a payload.
     * That is a truncated frame, -EPROTO. (Between frames it is a plain
     * disconnect: -ECONNRESET, also checked.) */
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open(&b);
        raw_msg(b.raw, 1, REC_SEQ, 0);
        bad_still_open(&b);
        unsigned char h[FR_HDR], p[10] = {0};
        fr_header(h, 10, FR_MSG, 0, 0, 1, 7);
        if (i == 0) {
            raw_send(b.raw, h, 7);
        } else if (i == 1) {
            raw_send(b.raw, h, sizeof h);
            raw_send(b.raw, p, 5);
        } else if (i == 2) {
            raw_send(b.raw, h, sizeof h);
        }
        bad_still_open(&b);
        raw_eof(&b);
        bad_expect(&b, i == 3 ? -ECONNRESET : -EPROTO);
        CHECK_EQ(b.r1.msgs, 1);
    }
}

/* ---- HELLO -------------------------------------------------------------- */

TEST(ch_bad_frame_before_hello)
{
    /* A1: the first frame must be HELLO. */
    static const unsigned types[] = {FR_MSG, FR_CREATE, FR_WILLCLOSE,
                                     FR_DESTROY};
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open_cfg(&b, 0, 1, 5000);
        bad_still_open(&b);
        if (types[i] == FR_CREATE)
            raw_create(b.raw, 2, 0, 1);
        else if (types[i] == FR_MSG)
            raw_msg(b.raw, 1, REC_SEQ, 0);
        else
            raw_frame(b.raw, types[i], types[i] == FR_DESTROY ? 1 : 0,
                      types[i] == FR_DESTROY ? 1 : 0, NULL, 0);
        bad_expect_eproto(&b);
        CHECK_EQ(b.r1.msgs, 0);
        CHECK_EQ(b.s.npeer, 0);
    }
}

TEST(ch_bad_second_hello)
{
    /* A1: HELLO only once. */
    struct bad b;
    bad_open(&b);
    bad_still_open(&b);
    raw_hello(b.raw);
    bad_expect_eproto(&b);
}

TEST(ch_bad_hello_fields)
{
    /* A1: a HELLO with another protocol version, an actor id or a
     * payload. */
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open_cfg(&b, 0, 1, 5000);
        bad_still_open(&b);
        if (i == 0)
            raw_frame(b.raw, FR_HELLO, 0, FR_VERSION + 1, NULL, 0);
        else if (i == 1)
            raw_frame(b.raw, FR_HELLO, 0, 0, NULL, 0);
        else if (i == 2)
            raw_frame(b.raw, FR_HELLO, 2, FR_VERSION, NULL, 0);
        else
            raw_frame(b.raw, FR_HELLO, 0, FR_VERSION, "abcd", 4);
        bad_expect_eproto(&b);
    }
}

/* ---- MSG ---------------------------------------------------------------- */

TEST(ch_bad_msg_unknown_actor)
{
    /* A1: MSG to an actor that does not exist: never created (either
     * parity) or id 0. */
    static const uint32_t ids[] = {99, 2, 0, 5};
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open(&b);
        bad_still_open(&b);
        raw_msg(b.raw, ids[i], REC_SEQ, 0);
        bad_expect_eproto(&b);
    }
}

TEST(ch_bad_msg_after_peer_destroy)
{
    /* A1, A3: after sending Destroy the peer may not send on that actor.
     * (1) our actor r1 (its Delete waits for its managee); (2) an actor
     * of the peer's own, ours answering late; (3) after the whole
     * handshake, when the actor is gone (it finished normally). */
    for (int i = 0; i < 3; i++) {
        struct bad b;
        bad_open(&b);
        uint32_t target = 1;
        if (i > 0) {
            b.s.req_result = i == 1 ? CURFEW_PENDING : CURFEW_DONE;
            raw_create(b.raw, 2, 0, 9);
            target = 2;
        }
        raw_msg(b.raw, target, REC_SEQ, 0);
        raw_frame(b.raw, FR_DESTROY, target, CURFEW_DESTROY_DELETED, NULL, 0);
        bad_still_open(&b);
        ch_rec *t = i == 0 ? &b.r1 : &b.s.peer[0];
        CHECK_EQ(t->requests, 1);
        CHECK_EQ(t->msgs, 1);
        if (i == 2) {
            CHECK_EQ(t->destroyed, 1); /* Delete went, it is gone */
            b.normal[b.nnormal++] = t;
        } else {
            CHECK_EQ(t->destroyed, 0);
        }
        raw_msg(b.raw, target, REC_SEQ, 1);
        bad_expect_eproto(&b);
        if (i == 2)
            CHECK_EQ(t->reason, CURFEW_DESTROY_DELETED);
        CHECK_EQ(t->msgs, 1);
    }
}

/* ---- DESTROY / DELETE --------------------------------------------------- */

TEST(ch_bad_delete_without_destroy)
{
    /* A1, A3: Delete answers a Destroy; without one it is a violation, for
     * our actor and for the peer's. */
    for (int i = 0; i < 2; i++) {
        struct bad b;
        bad_open(&b);
        if (i) {
            raw_create(b.raw, 2, 0, 1);
            bad_still_open(&b);
        }
        raw_frame(b.raw, FR_DELETE, i ? 2 : 3, 0, NULL, 0);
        bad_expect_eproto(&b);
    }
}

TEST(ch_bad_destroy_reason)
{
    /* A1: Destroy carries DELETED, MANAGER_DELETED or NORMAL_CLOSE; 0,
     * ABNORMAL (never sent on the wire) and anything else are refused. A
     * valid MANAGER_DELETED on the same actor is accepted. */
    static const uint32_t reasons[] = {0, CURFEW_DESTROY_ABNORMAL, 5,
                                       0xFFFFFFFFu};
    for (int i = 0; i < 5; i++) {
        struct bad b;
        bad_open(&b);
        b.s.req_result = CURFEW_PENDING;
        raw_create(b.raw, 2, 0, 1);
        bad_still_open(&b);
        uint32_t why = i < 4 ? reasons[i] : CURFEW_DESTROY_MANAGER_DELETED;
        raw_frame(b.raw, FR_DESTROY, 2, why, NULL, 0);
        if (i == 4) {
            bad_still_open(&b);
            CHECK_EQ(b.s.peer[0].requests, 1);
            CHECK_EQ(b.s.peer[0].req_reason, CURFEW_DESTROY_MANAGER_DELETED);
            raw_frame(b.raw, FR_ACK, 0, 0, NULL, 0); /* to end it */
        }
        bad_expect_eproto(&b);
        CHECK_EQ(b.s.peer[0].requests, i == 4 ? 1 : 0);
    }
}

TEST(ch_bad_destroy_twice_or_unknown)
{
    /* A1: a second Destroy of the same actor, or Destroy of an unknown
     * one. */
    for (int i = 0; i < 2; i++) {
        struct bad b;
        bad_open(&b);
        if (i == 0) {
            raw_frame(b.raw, FR_DESTROY, 1, CURFEW_DESTROY_DELETED, NULL, 0);
            bad_still_open(&b);
            CHECK_EQ(b.r1.requests, 1);
            raw_frame(b.raw, FR_DESTROY, 1, CURFEW_DESTROY_DELETED, NULL, 0);
        } else {
            raw_frame(b.raw, FR_DESTROY, 99, CURFEW_DESTROY_DELETED, NULL, 0);
        }
        bad_expect_eproto(&b);
        CHECK_EQ(b.r1.requests, i == 0 ? 1 : 0);
    }
}

TEST(ch_bad_control_frame_with_payload)
{
    /* A1: DESTROY, DELETE, WILLCLOSE and ACK carry no payload. */
    static const unsigned types[] = {FR_DESTROY, FR_DELETE, FR_WILLCLOSE,
                                     FR_ACK};
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open(&b);
        bad_still_open(&b);
        raw_frame(b.raw, types[i], types[i] <= FR_DELETE ? 1 : 0,
                  types[i] == FR_DESTROY ? 1 : 0, "xy", 2);
        bad_expect_eproto(&b);
        CHECK_EQ(b.r1.requests, 0);
    }
}

/* ---- CREATE ------------------------------------------------------------- */

TEST(ch_bad_create_id)
{
    /* A1: the child side hands out even ids, each once, increasing: an
     * odd id, id 0, the same id twice, a smaller id after a larger one,
     * and an id reused after its actor was deleted. */
    for (int i = 0; i < 5; i++) {
        struct bad b;
        bad_open(&b);
        if (i == 0) {
            raw_create(b.raw, 5, 0, 1);
        } else if (i == 1) {
            raw_create(b.raw, 0, 0, 1);
        } else if (i == 2) {
            raw_create(b.raw, 2, 0, 1);
            bad_still_open(&b);
            raw_create(b.raw, 2, 0, 1);
        } else if (i == 3) {
            raw_create(b.raw, 6, 0, 1);
            bad_still_open(&b);
            raw_create(b.raw, 4, 0, 1);
        } else {
            raw_create(b.raw, 2, 0, 1);
            raw_frame(b.raw, FR_DESTROY, 2, CURFEW_DESTROY_DELETED, NULL, 0);
            bad_still_open(&b);
            CHECK_EQ(b.s.peer[0].destroyed, 1);
            CHECK_EQ(b.s.peer[0].reason, CURFEW_DESTROY_DELETED);
            b.normal[b.nnormal++] = &b.s.peer[0];
            raw_create(b.raw, 2, 0, 1);
        }
        bad_expect_eproto(&b);
        CHECK(b.s.npeer <= (i >= 2 ? 2 : 1));
    }
}

TEST(ch_bad_create_manager)
{
    /* A1: Create under a manager that does not exist (an id nobody made,
     * an id of ours not yet handed out), under a manager the peer itself
     * is destroying (ours, or one of its own that we answer late). */
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open(&b);
        if (i == 0) {
            raw_create(b.raw, 2, 98, 1);
        } else if (i == 1) {
            raw_create(b.raw, 2, 5, 1);
        } else if (i == 2) {
            raw_frame(b.raw, FR_DESTROY, 1, CURFEW_DESTROY_DELETED, NULL, 0);
            bad_still_open(&b);
            CHECK_EQ(b.r1.requests, 1);
            raw_create(b.raw, 2, 1, 1);
        } else {
            b.s.req_result = CURFEW_PENDING;
            raw_create(b.raw, 2, 0, 1);
            raw_frame(b.raw, FR_DESTROY, 2, CURFEW_DESTROY_DELETED, NULL, 0);
            bad_still_open(&b);
            CHECK_EQ(b.s.peer[0].requests, 1);
            raw_create(b.raw, 4, 2, 1);
        }
        bad_expect_eproto(&b);
        /* A Create refused before on_actor_created makes no actor. */
        CHECK_EQ(b.s.npeer, i == 3 ? 1 : 0);
    }
}

TEST(ch_bad_create_not_accepted)
{
    /* A1: Create when on_actor_created is NULL; when it refuses (the
     * actor it already set up still gets on_destroy ABNORMAL once); when
     * it leaves the actor without ops; a payload shorter than the kind. */
    for (int i = 0; i < 4; i++) {
        struct bad b;
        bad_open_cfg(&b, 0, i != 0, 5000);
        raw_hello(b.raw);
        if (i == 1)
            b.s.accept = -EPERM;
        if (i == 2)
            b.s.set_ops = 0;
        if (i == 3)
            raw_frame(b.raw, FR_CREATE, 2, 0, "abc", 3);
        else
            raw_create(b.raw, 2, 0, 1);
        bad_expect_eproto(&b);
        CHECK_EQ(b.s.npeer, i == 1 || i == 2 ? 1 : 0);
    }
}

/* ---- WILLCLOSE / ACK ---------------------------------------------------- */

TEST(ch_bad_willclose_twice)
{
    /* A1, A5: WillClose once; also with an actor id or aux set. The
     * first WillClose is accepted (the channel is closing, waiting for
     * the peer to destroy our actors). */
    for (int i = 0; i < 3; i++) {
        struct bad b;
        bad_open(&b);
        if (i == 0) {
            raw_frame(b.raw, FR_WILLCLOSE, 0, 0, NULL, 0);
            bad_still_open(&b);
            CHECK_EQ(curfew_channel_state(b.s.ch), CURFEW_CHANNEL_CLOSING);
            raw_frame(b.raw, FR_WILLCLOSE, 0, 0, NULL, 0);
        } else {
            raw_frame(b.raw, FR_WILLCLOSE, i == 1 ? 1 : 0, i == 2 ? 1 : 0, NULL,
                      0);
        }
        bad_expect_eproto(&b);
    }
}

TEST(ch_bad_ack_without_willclose)
{
    /* A1, A5: an ACK answers our WillClose; we sent none. */
    struct bad b;
    bad_open(&b);
    bad_still_open(&b);
    raw_frame(b.raw, FR_ACK, 0, 0, NULL, 0);
    bad_expect_eproto(&b);
}

/* Queues big messages the raw peer never reads, until the socket is full
 * and some output stays queued in the channel. */
static void stuck_output(struct bad *b, ch_rec *on)
{
    static unsigned char big[60000];
    for (int i = 0; i < 400 && !curfew_channel_pending_bytes(b->s.ch); i++)
        CHECK_EQ(curfew_actor_send(on->a, 1, big, sizeof big), 0);
    CHECK(curfew_channel_pending_bytes(b->s.ch) > 0);
}

TEST(ch_bad_frame_after_ack)
{
    /* A1, A5: after its WillClose ACK the peer has nothing left to say.
     * Our output is still queued (the peer does not read), so the
     * channel is still closing when the next frame comes: -EPROTO. The
     * actors had finished normally (NORMAL_CLOSE) before. */
    struct bad b;
    bad_open(&b);
    bad_still_open(&b);
    stuck_output(&b, &b.r1);
    CHECK_EQ(curfew_channel_close(b.s.ch), 0);
    raw_frame(b.raw, FR_DELETE, 3, 0, NULL, 0);
    raw_frame(b.raw, FR_DELETE, 1, 0, NULL, 0);
    raw_frame(b.raw, FR_ACK, 0, 0, NULL, 0);
    bad_turns(&b, 6);
    CHECK_EQ(b.r1.destroyed, 1);
    CHECK_EQ(b.r2.destroyed, 1);
    CHECK_EQ(b.r1.reason, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(b.r2.reason, CURFEW_DESTROY_NORMAL_CLOSE);
    CHECK_EQ(b.s.closes, 0);
    CHECK_EQ(curfew_channel_state(b.s.ch), CURFEW_CHANNEL_CLOSING);
    b.normal[b.nnormal++] = &b.r1;
    b.normal[b.nnormal++] = &b.r2;
    raw_frame(b.raw, FR_WILLCLOSE, 0, 0, NULL, 0);
    bad_expect_eproto(&b);
}

TEST(ch_bad_ack_with_actors_left)
{
    /* A1, A5: an ACK says the peer has no actor left, yet ours still wait
     * for its Delete; the peer then goes away. The channel must end at
     * once as a protocol error, not wait for close_timeout_ms (and with
     * CURFEW_NEVER, forever). */
    struct bad b;
    bad_open_cfg(&b, 0, 1, 3000);
    raw_hello(b.raw);
    bad_still_open(&b);
    CHECK_EQ(curfew_channel_close(b.s.ch), 0);
    raw_frame(b.raw, FR_ACK, 0, 0, NULL, 0);
    raw_eof(&b);
    bad_expect_eproto(&b);
}

/* ---- random frames ------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

TEST(ch_bad_random_frames)
{
    /* A1, A2: 2000 random sequences of frames, mostly plausible (any type,
     * small ids, odd flags now and then). Whatever the channel makes of
     * them it stays consistent: it is open, or closed with -EPROTO (or 0
     * if the sequence happened to be a proper close); every actor gets
     * on_destroy exactly once by the end; on_close runs once. */
    static const uint32_t ids[] = {0, 1, 2, 3, 4, 5, 6, 8, 99};
    int n_open = 0, n_eproto = 0, n_clean = 0;
    for (int it = 0; it < 2000; it++) {
        struct bad b;
        bad_open(&b);
        b.s.req_result = rnd(3) == 0 ? CURFEW_PENDING : CURFEW_DONE;
        int n = 1 + (int)rnd(6);
        uint32_t next_id = 2, known[8] = {1, 3};
        int nknown = 2;
        for (int k = 0; k < n; k++) {
            /* Mostly frames that make sense somewhere, some that never do. */
            uint32_t c = rnd(100), id = known[rnd((uint32_t)nknown)];
            unsigned type, flags = 0;
            uint32_t aux = 0, len = 0;
            if (c < 30) {
                type = FR_MSG;
                aux = rnd(5);
                len = 4;
            } else if (c < 45) {
                type = FR_CREATE;
                aux = rnd(2) ? 0 : id;
                id = next_id;
                next_id += 2;
                if (nknown < 8)
                    known[nknown++] = id;
                len = 4;
            } else if (c < 55) {
                type = FR_DESTROY;
                aux = 1 + rnd(3);
            } else if (c < 60) {
                type = FR_DELETE;
            } else if (c < 63) {
                type = FR_WILLCLOSE;
                id = 0;
            } else if (c < 65) {
                type = FR_ACK;
                id = 0;
            } else {
                type = rnd(20) ? 1 + rnd(7) : rnd(256);
                id = ids[rnd(9)];
                aux = rnd(4) == 0 ? ids[rnd(9)] : rnd(5);
                flags = rnd(30) == 0 ? 1 : 0;
                len = type == FR_CREATE || type == FR_MSG ? 4 : 0;
                if (rnd(15) == 0)
                    len = rnd(9);
            }
            unsigned char p[8] = {0, 0, 0, 1, 0, 0, 0, 0};
            unsigned char h[FR_HDR];
            fr_header(h, len, type, flags, 0, id, aux);
            raw_send(b.raw, h, sizeof h);
            if (len)
                raw_send(b.raw, p, len);
        }
        /* Everything is in the socket already: one read takes it all. */
        bad_turns_ms(&b, 3, 0);
        if (b.s.closes) {
            if (b.s.close_err != -EPROTO && b.s.close_err != 0)
                th_fail(__FILE__, __LINE__, "iteration %d: on_close(%d)", it,
                        b.s.close_err);
        } else {
            if (b.s.close_err != 0)
                th_fail(__FILE__, __LINE__, "iteration %d", it);
        }
        int was_closed = b.s.closes;
        if (!was_closed)
            n_open++;
        else if (b.s.close_err)
            n_eproto++;
        else
            n_clean++;
        curfew_channel_free(b.s.ch);
        close(b.raw);
        if (b.s.closes != 1)
            th_fail(__FILE__, __LINE__, "iteration %d: %d on_close", it,
                    b.s.closes);
        if (!was_closed && b.s.close_err != -ECANCELED)
            th_fail(__FILE__, __LINE__, "iteration %d: free gave %d", it,
                    b.s.close_err);
        const ch_rec *all[CH_SIDE_PEERS + 2];
        int na = 0;
        all[na++] = &b.r1;
        all[na++] = &b.r2;
        for (int i = 0; i < b.s.npeer; i++)
            all[na++] = &b.s.peer[i];
        for (int i = 0; i < na; i++) {
            if (all[i]->destroyed != 1 || all[i]->reason < 1 ||
                all[i]->reason > 4)
                th_fail(__FILE__, __LINE__,
                        "iteration %d: actor %u on_destroy %d times, "
                        "reason %d",
                        it, all[i]->id, all[i]->destroyed, all[i]->reason);
        }
        if (b.r2.order > b.r1.order)
            th_fail(__FILE__, __LINE__, "iteration %d: manager first", it);
    }
    /* Both outcomes were exercised. */
    fprintf(stderr, "random frames: %d still open, %d -EPROTO, %d clean\n",
            n_open, n_eproto, n_clean);
    CHECK(n_open > 50);
    CHECK(n_eproto > 50);
}

/* ---- deep and large trees of actors ------------------------------------
 *
 * The peer creates n actors in chains of `depth`: actor i (id 2i+2) is
 * managed by actor i-1 unless i is a multiple of depth. 20 bytes of input
 * per actor. The receiver may refuse a tree it finds too deep (-EPROTO)
 * or handle it; either way it must not crash and must not take more than
 * linear time, and every actor it accepted gets on_destroy once, managees
 * first. The work runs in a child process so that a crash or a hang is
 * reported, bounded, by the test. */
struct tree {
    int n, depth, created, destroyed;
    unsigned char *gone; /* by index */
    int order_ok, reason_ok;
    int want_reason;
};

static struct tree the_tree;

static void tree_msg(curfew_actor *a, uint32_t type, const void *data,
                     size_t len, void *arg)
{
    (void)a;
    (void)type;
    (void)data;
    (void)len;
    (void)arg;
}

static void tree_destroy(curfew_actor *a, curfew_destroy_reason reason,
                         void *arg)
{
    struct tree *t = &the_tree;
    int i = (int)(curfew_actor_id(a) / 2) - 1;
    (void)arg;
    CHECK(i >= 0 && i < t->n);
    CHECK(!t->gone[i]);
    if ((int)reason != t->want_reason)
        t->reason_ok = 0;
    /* A2: managees first: the next one down its chain is gone. */
    if (i + 1 < t->created && (i + 1) % t->depth != 0 && !t->gone[i + 1])
        t->order_ok = 0;
    t->gone[i] = 1;
    t->destroyed++;
}

static const curfew_actor_ops tree_ops = {.on_message = tree_msg,
                                          .on_destroy = tree_destroy};

static int tree_created(curfew_channel *ch, curfew_actor *a,
                        curfew_actor *manager, uint32_t kind, const void *data,
                        size_t len, void *arg)
{
    (void)ch;
    (void)manager;
    (void)kind;
    (void)data;
    (void)len;
    (void)arg;
    the_tree.created++;
    return curfew_actor_set_ops(a, &tree_ops, NULL);
}

static int tree_closes, tree_err;

static void tree_closed(curfew_channel *ch, int err, void *arg)
{
    (void)ch;
    (void)arg;
    tree_closes++;
    tree_err = err;
}

static void tree_verify(int err)
{
    struct tree *t = &the_tree;
    CHECK_EQ(tree_closes, 1);
    CHECK_EQ(tree_err, err);
    CHECK_EQ(t->destroyed, t->created);
    CHECK(t->order_ok);
    CHECK(t->reason_ok);
}

CHILD(big_tree)
{
    CHECK_EQ(argc, 3);
    struct tree *t = &the_tree;
    t->n = atoi(argv[0]);
    t->depth = atoi(argv[1]);
    t->order_ok = t->reason_ok = 1;
    t->want_reason = CURFEW_DESTROY_ABNORMAL;
    t->gone = calloc((size_t)t->n, 1);
    CHECK(t->gone != NULL);
    int sv[2];
    ch_socketpair(sv);
    curfew_channel_config cfg = {.side = CURFEW_SIDE_PARENT,
                                 .on_actor_created = tree_created,
                                 .on_close = tree_closed};
    curfew_channel *ch = NULL;
    CHECK_EQ(curfew_channel_create(sv[0], &cfg, &ch), 0);
    raw_hello(sv[1]);
    enum { PER = 3000 };
    unsigned char *buf = malloc(PER * 20);
    CHECK(buf != NULL);
    int refused = 0;
    for (int i = 0; i < t->n && !refused;) {
        size_t len = 0;
        for (int k = 0; k < PER && i < t->n; k++, i++) {
            uint32_t mgr = i % t->depth ? (uint32_t)(2 * i) : 0;
            fr_header(buf + len, 4, FR_CREATE, 0, 0, (uint32_t)(2 * i + 2),
                      mgr);
            fr_put32(buf + len + FR_HDR, 1);
            len += 20;
        }
        raw_send(sv[1], buf, len);
        for (int k = 0; k < 4 && !refused; k++)
            refused = curfew_channel_dispatch(ch) == 1;
        raw_drain(sv[1]);
    }
    free(buf);
    if (refused) {
        /* A limit refused the tree: a protocol error, every actor it had
         * accepted gone once, deepest first. */
        tree_verify(-EPROTO);
        fprintf(stderr, "tree refused after %d actors\n", t->created);
    } else if (strcmp(argv[2], "close") == 0) {
        /* Destroy handshakes for the whole tree, then WillClose; then free
         * aborts them all. */
        CHECK_EQ(t->created, t->n);
        CHECK_EQ(curfew_channel_close(ch), 0);
        CHECK_EQ(curfew_channel_state(ch), CURFEW_CHANNEL_CLOSING);
        curfew_channel_free(ch);
        ch = NULL;
        tree_verify(-ECANCELED);
    } else {
        CHECK_EQ(t->created, t->n);
        raw_frame(sv[1], 99, 0, 0, NULL, 0);
        CHECK_EQ(ch_run_until_closed(ch, 3000), 1);
        tree_verify(-EPROTO);
    }
    curfew_channel_free(ch);
    close(sv[1]);
    free(t->gone);
    return 0;
}

/* CPU time (user + system) of the children reaped so far, in ms. */
static int64_t children_cpu_ms(void)
{
    struct rusage ru;
    CHECK_EQ(getrusage(RUSAGE_CHILDREN, &ru), 0);
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* The time bound is on the CPU time the child used, process start
 * included: what "linear in the actors" is about, whatever else the
 * machine runs. The wall clock only catches a hang, with room for a
 * loaded machine (a sanitized child sharing two cores with a parallel
 * ctest took 8.5 s of wall time for 1.2 s of CPU). */
static void run_tree(const char *n, const char *depth, const char *mode,
                     int64_t cpu_ms)
{
    int64_t t0 = th_now_ms(), cpu0 = children_cpu_ms();
    pid_t pid = th_spawn_child("big_tree", n, depth, mode, NULL);
    int st = th_wait_child(pid, 60000); /* fails the test if it hangs */
    int64_t wall = th_now_ms() - t0, cpu = children_cpu_ms() - cpu0;
    if (WIFSIGNALED(st))
        th_fail(__FILE__, __LINE__,
                "%s actors in chains of %s, %s: killed by signal %d", n, depth,
                mode, WTERMSIG(st));
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    fprintf(stderr,
            "%s actors in chains of %s, %s: %lld ms of CPU (bound %lld), "
            "%lld ms of wall time\n",
            n, depth, mode, (long long)cpu, (long long)cpu_ms, (long long)wall);
    CHECK(cpu < cpu_ms);
}

TEST(ch_bad_deep_chain)
{
    /* A1: one chain of 200 000 actors, each managing the next (4 MB of
     * input, every frame within the limit), then our close and free: no
     * stack exhaustion (the tree is refused at some depth with -EPROTO, or
     * handled), bounded time (10 s of CPU). */
    run_tree("200000", "200000", "close", 10000);
}

TEST(ch_bad_many_chains_abort)
{
    /* A1, A2: 100 000 actors in chains of 50, then a protocol error:
     * every on_destroy once, deepest first, in time linear in the actors
     * (bounded at 8 s of CPU with process start, sanitizers included). */
    run_tree("100000", "50", "abort", 8000);
}
