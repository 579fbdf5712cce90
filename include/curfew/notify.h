/* curfew notify: tells a service manager (systemd's NOTIFY_SOCKET) how the
 * shutdown goes, without libsystemd (S2).
 *
 * SPDX-License-Identifier: MIT
 *
 * docs/signals.md has an entry per function and the messages sent;
 * docs/integrations.md a sample systemd unit.
 */
#ifndef CURFEW_NOTIFY_H
#define CURFEW_NOTIFY_H

#include <curfew/core.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Settings of curfew_notify_attach_opts(); zero-initialised means the
 * defaults. */
typedef struct curfew_notify_options {
    /* How often the notify thread looks at the shutdown, in ms: STATUS= is
     * sent when the text changed, EXTEND_TIMEOUT_USEC= when blockers
     * finished since the last extension. 0: 1000. */
    int32_t interval_ms;
    /* The extension each EXTEND_TIMEOUT_USEC= asks for, in ms: a shutdown
     * in which no blocker finishes for this long is left to the service
     * manager's stop timeout. 0: 10000. Must not be below interval_ms. */
    int32_t extend_ms;
} curfew_notify_options;

/* Attaches the service-manager protocol to cf, with the default options
 * (S2). Nothing is sent and no thread runs before the shutdown begins
 * (C6). From the first dispatch after curfew_begin() on, one datagram per
 * message goes to $NOTIFY_SOCKET (a path, or "@name" for an abstract
 * socket):
 * - "STOPPING=1" once, first;
 * - "STATUS=stopping: PHASE; waiting for BARRIER: NAME (STATUS), ..." with
 *   the first pending blockers (curfew_pending_summary()), whenever the
 *   text changes;
 * - "EXTEND_TIMEOUT_USEC=N" every interval in which blockers finished or a
 *   phase changed: nothing while the shutdown is stuck, so the service
 *   manager's timeout kills a stuck shutdown and not a progressing one;
 * - "STATUS=stopped: shutdown complete in N ms" at the end.
 * The messages are sent from the dispatching thread (the first and last)
 * and from a notify thread started at begin and joined at completion.
 * Returns 0, -ENOENT (NOTIFY_SOCKET unset or empty), -EINVAL (NULL cf, an
 * address that is neither "/path" nor "@name", or too long), -EALREADY
 * (attached already), -EBUSY (the shutdown has begun: listeners are
 * fixed), -ENOMEM, or the negative errno of socket().
 * Thread: any. */
int curfew_notify_attach(curfew *cf);

/* As curfew_notify_attach() with options (opts may be NULL: the
 * defaults). Returns as curfew_notify_attach(), and -EINVAL for a negative
 * value or extend_ms below interval_ms. Thread: any. */
int curfew_notify_attach_opts(curfew *cf, const curfew_notify_options *opts);

/* Sends one message (e.g. "READY=1" once the program has started, which a
 * Type=notify unit waits for) as one datagram to $NOTIFY_SOCKET. Returns
 * 0, -ENOENT (NOTIFY_SOCKET unset or empty), -EINVAL (NULL or empty
 * message, bad address), or the negative errno of socket() or sendto().
 * Thread: any. */
int curfew_notify_send(const char *message);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_NOTIFY_H */
