/* curfew: coordinated asynchronous shutdown for multi-threaded,
 * multi-process C programs. Including this header includes every module's
 * public header (S5).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_H
#define CURFEW_H

#include <curfew/channel.h>
#include <curfew/core.h>
#include <curfew/io.h>
#include <curfew/lifetime.h>
#include <curfew/notify.h>
#include <curfew/process.h>
#include <curfew/report.h>
#include <curfew/signals.h>
#include <curfew/worker.h>

/* The libuv and GLib adapters (curfew/uv.h, curfew/glib.h) are not included
 * here: they need those libraries' headers. Each has its own pkg-config
 * module, curfew-uv and curfew-glib. */

#endif /* CURFEW_H */
