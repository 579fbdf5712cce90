/* Internal entry points of the channel module, for tests and fuzzing.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_CHANNEL_INTERNAL_H
#define CURFEW_CHANNEL_INTERNAL_H

#include <curfew/channel.h>

#include <stddef.h>

/* Test hook: when set to "<frame>-sent" or "<frame>-received" (frame one of
 * hello, create, msg, destroy, delete, willclose, willclose-ack), the
 * process kills itself with SIGKILL right after that step, as a crash
 * would. Tests set it in a child process only. */
extern const char *curfew__channel_crash_step;

/* Feeds bytes to the decoder as if they had been read from the socket.
 * Returns 0 or the error that closed the channel. For the fuzz target. */
int curfew__channel_feed(curfew_channel *ch, const void *data, size_t len);

#endif
