/* Helpers shared by the core's tests: dispatch loops driven by the test.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_CORE_UTIL_H
#define CURFEW_TEST_CORE_UTIL_H

#include <curfew.h>

#include <stdint.h>

/* 1 if curfew_fd() is readable right now. */
int cu_fd_readable(const curfew *cf);

/* Dispatches until curfew has nothing more to do right now; returns what
 * the last curfew_dispatch() returned. */
int cu_pump(curfew *cf);

/* A caller-driven loop (D1) until the shutdown completed or ms passed:
 * poll(curfew_fd, curfew_timeout_ms), then dispatch. cap_ms > 0 bounds
 * each poll (tests of ordering use it); -1 trusts the descriptor alone, so
 * a lost wake-up makes the loop time out (tests of D1 and D3 need that).
 * Returns what the last curfew_dispatch() returned. */
int cu_drive(curfew *cf, int64_t ms, int cap_ms);

#endif
