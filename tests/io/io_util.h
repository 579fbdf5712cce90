/* Helpers shared by the durable I/O tests (tests/io/test_*.c): temporary
 * directories, whole-file reads and writes, self-checking file contents,
 * waiting for write callbacks, counting threads, and a coordinator driven
 * to the end of its shutdown.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_IO_UTIL_H
#define CURFEW_TEST_IO_UTIL_H

#include "harness.h"

#include <curfew/core.h>
#include <curfew/io.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define IO_PATH 512

/* 1 in a ThreadSanitizer build (slower: loops run fewer rounds there,
 * never fewer than the contract asks for). */
int io_tsan(void);
/* 1 in a ThreadSanitizer or AddressSanitizer build. */
int io_sanitized(void);

/* ---- files ----------------------------------------------------------------
 */

/* A fresh directory under $TMPDIR (or /tmp), removed by io_rmtree(), and
 * at exit if a check failed first (CURFEW_TEST_KEEP=1 keeps it). */
void io_tmpdir(char *out, size_t size);
/* Removes dir and everything in it (one level of subdirectories and
 * read-only modes included). */
void io_rmtree(const char *dir);
void io_path(char *out, size_t size, const char *dir, const char *name);
/* The whole file, NUL-terminated (len without the NUL), or NULL with errno
 * set when it cannot be opened. */
char *io_read_file(const char *path, size_t *len);
/* Writes text with plain stdio; fails the test on error. */
void io_put_file(const char *path, const void *data, size_t len);
/* 1 if the file holds exactly data. */
int io_file_is(const char *path, const void *data, size_t len);
/* The number of entries of dir whose name starts with prefix (hidden ones
 * included; "." and ".." never). */
int io_count_prefix(const char *dir, const char *prefix);
/* Entries of dir other than "." and "..". */
int io_count_entries(const char *dir);
/* The permission bits of path, or -1. */
int io_mode_of(const char *path);

/* ---- self-checking contents -----------------------------------------------
 *
 * "CFW1 <gen> <len> <sum>\n" then len payload bytes that depend on gen:
 * a file that mixes two versions, is cut short or is empty does not parse.
 */

/* Makes version gen of len payload bytes; returns a malloc'd buffer and
 * its size in *size. */
char *io_make_rec(uint64_t gen, size_t len, size_t *size);
/* 0 and *gen if data is one whole version; -1 otherwise (why in what). */
int io_parse_rec(const char *data, size_t size, uint64_t *gen,
                 const char **what);

/* ---- callbacks --------------------------------------------------------------
 */

/* Counts callbacks and their results; io_cb is the curfew_io_cb to pass
 * with the waiter as its argument. */
typedef struct io_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int errors;        /* callbacks with a result other than 0 */
    int last;          /* the latest result */
    int first_err;     /* the first result other than 0 */
    pthread_t tids[8]; /* the first threads the callbacks ran on */
    int ntids;
} io_waiter;

void io_waiter_init(io_waiter *w);
void io_waiter_destroy(io_waiter *w);
void io_cb(int result, void *arg);
/* Waits until w has seen n callbacks; fails after limit_ms. */
void io_waiter_wait(io_waiter *w, int n, int64_t limit_ms);
int io_waiter_calls(io_waiter *w);

/* ---- objects
 * ------------------------------------------------------------------
 */

/* A coordinator with the default phases; fails the test on error. */
curfew *io_new_cf(void);
/* curfew_io_create() that fails the test on error. */
curfew_io *io_new_io(curfew *cf, const char *phase, unsigned threads);
/* curfew_io_destroy(), retried for a short while: the I/O thread that ran
 * the last callback may still be tidying up (see docs/io.md). Fails the
 * test if it does not return 0 within limit_ms. */
void io_destroy_io(curfew_io *io, int64_t limit_ms);
/* curfew_begin() and curfew_run(); fails the test if the shutdown does
 * not end within limit_ms (a watchdog thread kills the process). */
void io_shutdown(curfew *cf, int64_t limit_ms);

/* The io's counters once every accepted request is accounted for
 * (written + coalesced + failed == requested): they are updated right
 * after a write's callbacks ran. Fails the test after limit_ms. */
curfew_io_stats io_stats_settled(curfew_io *io, int64_t limit_ms);

/* Threads of this process (/proc/self/task). */
int io_thread_count(void);
/* io_thread_count() once it is want, or after limit_ms: joined threads
 * leave /proc/self/task a moment after the join. */
int io_wait_thread_count(int want, int64_t limit_ms);
/* Starts and joins one thread, so that threads a sanitizer runtime starts
 * at the first pthread_create() exist before a test counts threads. */
void io_warm_threads(void);

/* xorshift32; a zero state is replaced by a fixed one. */
uint32_t io_rand(uint32_t *state);

/* A one-shot gate: io_gate_wait() blocks until io_gate_open(). */
typedef struct io_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} io_gate;

void io_gate_init(io_gate *g);
void io_gate_open(io_gate *g);
void io_gate_wait(io_gate *g);
void io_gate_destroy(io_gate *g);

/* Waits until *v >= want; fails after limit_ms. */
void io_wait_flag(atomic_int *v, int want, int64_t limit_ms);

#endif
