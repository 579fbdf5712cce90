/* curfew for GLib programs: drives a coordinator from a GMainContext (S4).
 *
 * SPDX-License-Identifier: MIT
 *
 * Not included by <curfew.h>: it needs GLib's headers. Link with
 * `pkg-config --cflags --libs curfew-glib`. docs/integrations.md has an
 * entry per function and an example.
 */
#ifndef CURFEW_GLIB_H
#define CURFEW_GLIB_H

#include <curfew/core.h>
#include <glib.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Drives cf from context (NULL: the global default context): a GSource
 * (named "curfew", priority G_PRIORITY_DEFAULT) that watches curfew_fd(cf)
 * and curfew_timeout_ms(cf) and calls curfew_dispatch(cf) on the thread
 * that iterates the context, so triggers and on_event run there (D1).
 * After the shutdown completed the source removes itself; a GMainLoop does
 * not stop by itself, so quit it from on_event at CURFEW_EV_COMPLETE. Do
 * not call curfew_run() or curfew_dispatch() elsewhere for cf. Returns 0,
 * -EINVAL (NULL cf), -EALREADY (cf is attached already), -ESHUTDOWN (the
 * shutdown has completed), -ENOMEM. Thread: any. */
int curfew_glib_attach(curfew *cf, GMainContext *context);

/* Removes the source (g_source_destroy()); call it before curfew_destroy()
 * when the shutdown did not complete. Returns 0 (also when the source had
 * removed itself at completion), -EINVAL (NULL), -ENOENT (cf was never
 * attached). Thread: any, but not while another thread destroys cf. */
int curfew_glib_detach(curfew *cf);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_GLIB_H */
