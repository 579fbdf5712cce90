/* curfew signals: SIGTERM and SIGINT begin the shutdown, a second SIGINT
 * exits at once after writing the shutdown record, SIGQUIT (opt-in) writes
 * a state report without stopping (S1).
 *
 * SPDX-License-Identifier: MIT
 *
 * docs/signals.md has an entry per function with an example.
 */
#ifndef CURFEW_SIGNALS_H
#define CURFEW_SIGNALS_H

#include <curfew/core.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* Flags of curfew_signals_install(). */
#define CURFEW_SIGNALS_DEFAULT 0u /* SIGTERM and SIGINT only */
#define CURFEW_SIGNALS_QUIT 1u    /* also SIGQUIT: write a state report */

/* The exit status of the immediate exit at a second SIGINT: 128 + SIGINT,
 * what a shell reports for a program killed by Ctrl-C. */
#define CURFEW_SIGNALS_EXIT_CODE 130

/* Installs handlers for SIGTERM and SIGINT (and SIGQUIT with
 * CURFEW_SIGNALS_QUIT) that drive cf (S1):
 * - SIGTERM or SIGINT begins the shutdown with curfew_begin_from_signal();
 *   a SIGTERM after that is ignored.
 * - A SIGINT that arrives when the shutdown has already begun (a second
 *   Ctrl-C) exits the process at once with CURFEW_SIGNALS_EXIT_CODE, after
 *   a helper thread has rewritten the shutdown record (cfg->record_path)
 *   with "failure" saying so. A third SIGINT exits without waiting for it.
 * - SIGQUIT writes a state report ("type": "curfew-state") to standard
 *   error, or to the file set with curfew_signals_set_state_path(), and
 *   the program goes on.
 * The handlers only store atomics and write to a pipe; the record and the
 * reports are written by a helper thread. That thread starts at the first
 * dispatch after the shutdown began (C6: none before), or at once with
 * CURFEW_SIGNALS_QUIT or when the shutdown has begun already. One
 * coordinator at a time per process holds the signals.
 * Returns 0, -EINVAL (NULL cf, unknown flags), -EALREADY (installed for cf
 * already), -EBUSY (installed for another coordinator), -ENOMEM, or the
 * negative errno of pipe(), sigaction() or pthread_create().
 * Thread: any, not from a signal handler. */
int curfew_signals_install(curfew *cf, unsigned flags);

/* Puts back the handlers that were installed before curfew_signals_install()
 * and stops the helper thread. Call it before curfew_destroy() (which does
 * it too, as a safety net, when no report is being written). Returns 0,
 * -EINVAL (NULL), -ENOENT (the signals are not installed for cf).
 * Thread: any, not from a signal handler. */
int curfew_signals_uninstall(curfew *cf);

/* Where SIGQUIT writes its state report: path (copied; the report replaces
 * the file atomically, as one line), or standard error when path is NULL.
 * Returns 0, -EINVAL (NULL cf, empty path), -ENOENT (the signals are not
 * installed for cf), -ENOMEM. Thread: any, not from a signal handler. */
int curfew_signals_set_state_path(curfew *cf, const char *path);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_SIGNALS_H */
