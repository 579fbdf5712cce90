/* Helpers shared by the worker tests (tests/worker/test_*.c): gates that
 * hold a worker's thread where a test wants it, waits with a limit,
 * driving a coordinator by hand, a small random generator, and the files
 * of the child processes that end in a hang report.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_WK_UTIL_H
#define CURFEW_TEST_WK_UTIL_H

#include "harness.h"

#include <curfew/core.h>
#include <curfew/worker.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define WK_PATH 512

/* 1 in a ThreadSanitizer build (slower: the stress loops run fewer
 * rounds there, never fewer than the contract's tests need). */
int wk_tsan(void);

/* ---- gates ---------------------------------------------------------------
 */

/* A one-shot gate: wk_gate_wait() blocks until wk_gate_open(). */
typedef struct wk_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} wk_gate;

void wk_gate_init(wk_gate *g);
void wk_gate_open(wk_gate *g);
void wk_gate_wait(wk_gate *g);
void wk_gate_destroy(wk_gate *g);

/* A task that marks `entered` and then waits at `gate`: holds the
 * worker's thread inside a started task. */
typedef struct wk_hold {
    wk_gate gate;
    atomic_int entered;
    atomic_int left;
    int state_inside; /* curfew_worker_state() when it started */
} wk_hold;

void wk_hold_init(wk_hold *h);
void wk_hold_task(curfew_worker *w, void *arg);
/* Waits (at most limit_ms, else the test fails) until the task runs. */
void wk_hold_wait_entered(wk_hold *h, int64_t limit_ms);
void wk_hold_destroy(wk_hold *h);

/* ---- waits ---------------------------------------------------------------
 */

/* Waits until curfew_worker_state(w) >= state; fails after limit_ms. */
void wk_wait_state(curfew_worker *w, int state, int64_t limit_ms);
/* Waits until *v >= want; fails after limit_ms. */
void wk_wait_flag(atomic_int *v, int want, int64_t limit_ms);
/* Sleeps us microseconds. */
void wk_sleep_us(int64_t us);

/* ---- a coordinator by hand -----------------------------------------------
 */

/* Dispatches (poll on curfew_fd, then curfew_dispatch) for ms
 * milliseconds, or until the shutdown completes. Returns 1 if it did. */
int wk_drive_for(curfew *cf, int64_t ms);
/* Dispatches until the shutdown completes; fails after limit_ms. */
void wk_drive(curfew *cf, int64_t limit_ms);

/* ---- random numbers ------------------------------------------------------
 */

/* xorshift32; a zero state is replaced by a fixed one. */
uint32_t wk_rand(uint32_t *state);
/* A seed for this test: $WK_SEED if set, else from the clock. Printed to
 * standard error so a failing run can be repeated. */
uint32_t wk_seed(const char *test);

/* ---- files ---------------------------------------------------------------
 */

/* A fresh directory for one test; wk_rmdir() removes it and its files. */
void wk_tmpdir(char *out, size_t size);
void wk_rmdir(const char *dir);
void wk_path(char *out, size_t size, const char *dir, const char *name);
/* The whole file, NUL-terminated, or NULL. */
char *wk_read_file(const char *path, size_t *len);
/* Writes "value\n" to dir/name (replacing it). */
void wk_put_int(const char *dir, const char *name, int64_t value);
/* Reads what wk_put_int() wrote; fails the test when it is missing. */
int64_t wk_get_int(const char *dir, const char *name);

#endif
