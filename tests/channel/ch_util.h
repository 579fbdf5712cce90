/* Helpers shared by the channel tests (CONTRACT.md section A): raw frames
 * for a peer driven by hand, a loop that drives several channels from one
 * thread, and recorders for actors and channels.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_CH_UTIL_H
#define CURFEW_TEST_CH_UTIL_H

#include <curfew/channel.h>

#include <stddef.h>
#include <stdint.h>

/* The wire format (src/channel/channel.c): a 16-byte big-endian header
 *   u32 len | u8 type | u8 flags | u16 reserved | u32 actor | u32 aux
 * and len bytes of payload. */
#define FR_HDR 16
#define FR_VERSION 1
enum {
    FR_HELLO = 1,
    FR_CREATE = 2,
    FR_MSG = 3,
    FR_DESTROY = 4,
    FR_DELETE = 5,
    FR_WILLCLOSE = 6,
    FR_ACK = 7
};

void fr_put32(unsigned char *p, uint32_t v);
uint32_t fr_get32(const unsigned char *p);
/* Writes a header into h (FR_HDR bytes). */
void fr_header(unsigned char *h, uint32_t len, unsigned type, unsigned flags,
               unsigned reserved, uint32_t actor, uint32_t aux);

/* Writes every byte to a socket (MSG_NOSIGNAL); fails the test on error. */
void raw_send(int fd, const void *p, size_t n);
/* One well-formed frame with the given fields and payload. */
void raw_frame(int fd, unsigned type, uint32_t actor, uint32_t aux,
               const void *payload, size_t len);
void raw_hello(int fd);
/* CREATE: payload is the kind (u32) and nothing else. */
void raw_create(int fd, uint32_t id, uint32_t manager, uint32_t kind);
/* Reads and drops whatever is readable now; returns the byte count. */
size_t raw_drain(int fd);

/* A connected AF_UNIX stream pair, both ends close-on-exec. */
void ch_socketpair(int sv[2]);
/* Clears FD_CLOEXEC, so a child started with th_spawn_child inherits fd. */
void ch_inheritable(int fd);

/* Drives channels (poll on their fds, events and timeouts, then
 * curfew_channel_dispatch on each) until done(arg) returns nonzero or ms
 * pass. Returns 1 if done, 0 on timeout. done may be NULL: runs ms. */
typedef int (*ch_pred)(void *arg);
int ch_pump(curfew_channel *const *chs, int n, ch_pred done, void *arg,
            int64_t ms);
/* Dispatches until nothing is readable or queued for a few rounds (at most
 * two seconds). */
void ch_settle(curfew_channel *const *chs, int n);
/* Runs a channel alone until it closed (dispatch returned 1) or ms passed;
 * returns the last dispatch result. */
int ch_run_until_closed(curfew_channel *ch, int64_t ms);

/* Message type whose payload is a u32 sequence number 0, 1, 2, ... */
#define REC_SEQ 100u

/* Records what happens to one actor. */
typedef struct ch_rec {
    curfew_actor *a; /* NULL once on_destroy ran */
    uint32_t id;
    int destroyed; /* on_destroy calls */
    int reason;
    int order;    /* rank of its on_destroy in the process (1, 2, ...) */
    int requests; /* on_destroy_request calls */
    int req_reason;
    int req_result; /* what on_destroy_request returns */
    int msgs;       /* messages received */
    uint32_t next_seq;
    uint32_t last_type;
    int msgs_at_destroy;
    int state_in_destroy; /* curfew_actor_state() inside on_destroy */
    int send_in_destroy;  /* curfew_actor_send() inside on_destroy */
    /* If set: every callback calls curfew_channel_dispatch(probe) and
     * keeps the result here (0 while not tried). */
    curfew_channel *probe;
    int probe_msg, probe_req, probe_destroy;
    /* Optional hook run inside on_destroy_request before it returns. */
    void (*on_req)(struct ch_rec *r);
    uint32_t sent_seq; /* free for the test: next sequence to send */
} ch_rec;

extern const curfew_actor_ops ch_rec_ops;
/* The next on_destroy rank. */
int ch_next_order(void);
/* Sends REC_SEQ message number r->sent_seq on r->a; returns the result. */
int ch_rec_send_seq(ch_rec *r);
/* Creates an actor recorded by r. */
int ch_rec_create(curfew_channel *ch, ch_rec *manager, uint32_t kind,
                  ch_rec *r);

#define CH_SIDE_PEERS 64

/* Records what happens to one channel and the actors its peer creates. */
typedef struct ch_side {
    curfew_channel *ch;
    int closes;
    int close_err;
    int close_order;
    int actors_at_close; /* stats.actors_live inside on_close */
    int accept;          /* what on_actor_created returns */
    int set_ops;         /* on_actor_created sets ch_rec_ops (default) */
    int req_result;      /* req_result for the actors the peer creates */
    ch_rec peer[CH_SIDE_PEERS];
    int npeer;
    uint32_t kinds[CH_SIDE_PEERS];
    curfew_actor *managers[CH_SIDE_PEERS];
    int states_at_create[CH_SIDE_PEERS]; /* channel state then */
    curfew_channel *probe; /* dispatch from on_close/on_actor_created */
    int probe_close, probe_created;
} ch_side;

/* Zeroes s and fills cfg so the channel reports into s. */
void ch_side_init(ch_side *s, curfew_channel_config *cfg,
                  curfew_channel_side side);
/* The peer-created actor with this id, or NULL. */
ch_rec *ch_side_peer(ch_side *s, uint32_t id);

/* Two channels in this process on one socket pair: a is the parent side,
 * b the child side; both sides' HELLO has been exchanged. tweak_a /
 * tweak_b give max_frame and close_timeout_ms (NULL: defaults). */
void ch_pair(ch_side *a, ch_side *b, const curfew_channel_config *tweak_a,
             const curfew_channel_config *tweak_b);

#endif
