/* curfew for libuv programs: drives a coordinator from a uv_loop_t (S4).
 *
 * SPDX-License-Identifier: MIT
 *
 * Not included by <curfew.h>: it needs libuv's headers. Link with
 * `pkg-config --cflags --libs curfew-uv`. docs/integrations.md has an entry
 * per function and an example.
 */
#ifndef CURFEW_UV_H
#define CURFEW_UV_H

#include <curfew/core.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Drives cf from loop: a uv_poll_t on curfew_fd(cf) and a uv_timer_t from
 * curfew_timeout_ms(cf) call curfew_dispatch(cf) on the loop's thread, so
 * triggers and on_event run there (D1). Before the shutdown begins the two
 * handles are unreferenced (uv_unref): they do not keep an idle loop
 * running. From the first dispatch after curfew_begin() on they are
 * referenced, so uv_run() goes on until the shutdown has completed; then
 * they are closed by themselves and uv_run() returns once the program's own
 * handles are closed too. Do not call curfew_run() or curfew_dispatch()
 * elsewhere for cf. Returns 0, -EINVAL (NULL), -EALREADY (cf is attached
 * to a loop already), -ESHUTDOWN (the shutdown has completed), -ENOMEM,
 * or the negative errno libuv gave. Thread: the loop's thread. */
int curfew_uv_attach(curfew *cf, uv_loop_t *loop);

/* Stops driving cf and closes the two handles (uv_close(): the loop must
 * run once more before uv_loop_close() succeeds). Needed only when the
 * shutdown did not complete (a program that never shut down through
 * curfew); call it before curfew_destroy(). Returns 0 (also when the
 * handles were closed at completion already), -EINVAL (NULL), -ENOENT (cf
 * was never attached). Thread: the loop's thread. */
int curfew_uv_detach(curfew *cf);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_UV_H */
