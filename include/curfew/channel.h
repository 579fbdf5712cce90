/* curfew channels and actors (contract section A): framed messages over a
 * connected stream socket, actors in a manager/managee tree on both ends,
 * and the handshakes that shut them down without losing a message:
 * Destroy -> (final messages) -> Delete for actors, WillClose for the
 * channel. on_destroy runs exactly once for every actor, whatever happens.
 *
 * SPDX-License-Identifier: MIT
 *
 * docs/channel.md has the frame layout, the state diagrams and one entry
 * per function. The Promela models in model/ use the same state names.
 *
 * Threads: a channel and its actors belong to one thread at a time, the
 * one that calls curfew_channel_dispatch(); every function below must be
 * called from it (callbacks run there too). Nothing here blocks.
 */
#ifndef CURFEW_CHANNEL_H
#define CURFEW_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

typedef struct curfew_channel curfew_channel;
typedef struct curfew_actor curfew_actor;

/* Why on_destroy ran (A2). */
typedef enum curfew_destroy_reason {
    CURFEW_DESTROY_DELETED = 1,         /* its own Destroy/Delete handshake */
    CURFEW_DESTROY_MANAGER_DELETED = 2, /* its manager was destroyed (A4) */
    CURFEW_DESTROY_NORMAL_CLOSE = 3,    /* the channel closed (A5) */
    CURFEW_DESTROY_ABNORMAL = 4         /* peer crashed, channel error */
} curfew_destroy_reason;

/* Actor states; the models in model/ use these names. */
typedef enum curfew_actor_lifecycle {
    CURFEW_ACTOR_ALIVE = 0,       /* may send and receive */
    CURFEW_ACTOR_DESTROYING = 1,  /* sent Destroy: receives, cannot send */
    CURFEW_ACTOR_DELETING = 2,    /* got Destroy: may send its final
                                     messages, then Delete */
    CURFEW_ACTOR_DELETE_SENT = 3, /* Destroys crossed: sent Delete, waits
                                     for the peer's */
    CURFEW_ACTOR_DEAD = 4         /* on_destroy ran (only seen inside it) */
} curfew_actor_lifecycle;

/* Channel states. */
typedef enum curfew_channel_lifecycle {
    CURFEW_CHANNEL_OPEN = 0,
    CURFEW_CHANNEL_CLOSING = 1, /* a WillClose handshake is under way */
    CURFEW_CHANNEL_CLOSED = 2   /* on_close ran */
} curfew_channel_lifecycle;

/* The two ends of a channel must be on different sides: it decides which
 * actor ids each end hands out, so they never collide. */
typedef enum curfew_channel_side {
    CURFEW_SIDE_PARENT = 0,
    CURFEW_SIDE_CHILD = 1
} curfew_channel_side;

typedef struct curfew_actor_ops {
    /* A message for this actor; data is valid during the call. */
    void (*on_message)(curfew_actor *a, uint32_t type, const void *data,
                       size_t len, void *arg);
    /* The peer started destroying this actor (A3). Send final messages
     * here, then return CURFEW_DONE (0: Delete goes now) or CURFEW_PENDING
     * (1: call curfew_actor_delete() later). NULL: Delete goes at once. */
    int (*on_destroy_request)(curfew_actor *a, curfew_destroy_reason reason,
                              void *arg);
    /* Exactly once for every actor, managees before their manager; the
     * actor is freed when it returns (A2). Only here should final clean-up
     * live. */
    void (*on_destroy)(curfew_actor *a, curfew_destroy_reason reason,
                       void *arg);
} curfew_actor_ops;

typedef struct curfew_channel_config {
    curfew_channel_side side;
    uint32_t max_frame;       /* payload limit; 0: 16 MiB (A1) */
    int32_t close_timeout_ms; /* WillClose must finish in this; 0: 10000,
                                 CURFEW_NEVER (-1): no limit */
    /* The peer created an actor (kind and data as the peer gave them).
     * Set its ops with curfew_actor_set_ops() here. Return 0 to accept, or
     * a negative errno to refuse: the channel then fails with -EPROTO, as
     * it does when a peer creates actors and this is NULL. */
    int (*on_actor_created)(curfew_channel *ch, curfew_actor *a,
                            curfew_actor *manager, uint32_t kind,
                            const void *data, size_t len, void *arg);
    /* Exactly once: 0 after a WillClose handshake, otherwise the error:
     * -EPROTO (the peer broke the protocol), -ECONNRESET (the peer went
     * away without closing), -ETIMEDOUT (close_timeout_ms passed),
     * -ECANCELED (curfew_channel_free() on an open channel), or the
     * negative errno of a failed read or write. */
    void (*on_close)(curfew_channel *ch, int err, void *arg);
    void *arg; /* for on_actor_created and on_close */
} curfew_channel_config;

/* Makes a channel over fd, a connected stream socket (socketpair or Unix
 * socket) the channel then owns: it is made non-blocking and close-on-exec
 * and closed by the channel. cfg may be NULL only for a channel whose peer
 * creates no actors. Sends the protocol greeting. Returns 0, -EINVAL,
 * -ENOMEM, or the error of fcntl(). Thread: any (the channel then belongs
 * to that thread's loop). */
int curfew_channel_create(int fd, const curfew_channel_config *cfg,
                          curfew_channel **out);

/* The descriptor to poll, for the events curfew_channel_events() names,
 * and the deadline in ms (-1 none, 0 now) before curfew_channel_dispatch()
 * must run anyway (D1). */
int curfew_channel_fd(const curfew_channel *ch);
int curfew_channel_events(const curfew_channel *ch); /* POLLIN|POLLOUT */
int curfew_channel_timeout_ms(const curfew_channel *ch);

/* Reads and handles what arrived, writes what is queued, checks the close
 * timeout; never blocks. Returns 1 once the channel is closed (on_close
 * ran), 0 while it is open, -EPERM from inside one of its callbacks. */
int curfew_channel_dispatch(curfew_channel *ch);

/* Starts the WillClose handshake (A5): every actor is destroyed with
 * reason CURFEW_DESTROY_NORMAL_CLOSE, then the channel closes with nothing
 * in flight; on_close(0) tells. Returns 0, -EALREADY (closing or closed),
 * -EINVAL. */
int curfew_channel_close(curfew_channel *ch);

/* A curfew_channel_lifecycle value, or -EINVAL. */
int curfew_channel_state(const curfew_channel *ch);

/* Frees the channel. On a channel not yet closed it first aborts: every
 * actor gets on_destroy(CURFEW_DESTROY_ABNORMAL), then on_close
 * (-ECANCELED). Must not be called from the channel's own callbacks. NULL
 * is a no-op. */
void curfew_channel_free(curfew_channel *ch);

/* Bytes queued for the peer and not yet written. */
size_t curfew_channel_pending_bytes(const curfew_channel *ch);

/* Creates an actor under manager (NULL: a top-level actor of the
 * channel); the peer learns of it with its kind and data (A2). Returns 0,
 * -EINVAL, -ENOMEM, -EPIPE (the manager is being destroyed or the channel
 * is closing or closed), -EMSGSIZE (data over the frame limit). */
int curfew_actor_create(curfew_channel *ch, curfew_actor *manager,
                        uint32_t kind, const void *data, size_t len,
                        const curfew_actor_ops *ops, void *arg,
                        curfew_actor **out);

/* Sets the callbacks of an actor the peer created (in on_actor_created).
 * Returns 0 or -EINVAL. */
int curfew_actor_set_ops(curfew_actor *a, const curfew_actor_ops *ops,
                         void *arg);

/* Queues a message for the peer's actor. Returns 0, -EPIPE once this side
 * sent Destroy or Delete for it, or the channel is closed (A3), -EMSGSIZE,
 * -ENOMEM, -EINVAL. */
int curfew_actor_send(curfew_actor *a, uint32_t type, const void *data,
                      size_t len);

/* Starts the Destroy handshake for the actor and, first, for each of its
 * managees (A3, A4). on_destroy follows once the peer answered. Returns 0,
 * -EALREADY (already being destroyed), -EINVAL. */
int curfew_actor_destroy(curfew_actor *a);

/* Sends Delete for an actor whose on_destroy_request returned
 * CURFEW_PENDING (its final messages are queued). Returns 0, -EALREADY,
 * -EINVAL (the peer has not asked). */
int curfew_actor_delete(curfew_actor *a);

/* A curfew_actor_lifecycle value, or -EINVAL. */
int curfew_actor_state(const curfew_actor *a);
uint32_t curfew_actor_id(const curfew_actor *a);
uint32_t curfew_actor_kind(const curfew_actor *a);
curfew_actor *curfew_actor_manager(const curfew_actor *a);
curfew_channel *curfew_actor_channel(const curfew_actor *a);

/* Counters: frames and user messages each way. */
typedef struct curfew_channel_stats {
    uint64_t frames_in, frames_out;
    uint64_t messages_in, messages_out;
    uint64_t actors_live;
} curfew_channel_stats;
int curfew_channel_stats_get(const curfew_channel *ch,
                             curfew_channel_stats *out);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_CHANNEL_H */
