/* curfew durable I/O (contract section I): atomic writes that are on disk
 * before their phase ends, coalescing of queued writes, debounced tasks
 * ("save soon"), and ordered operation queues whose close goes at the end.
 *
 * SPDX-License-Identifier: MIT
 *
 * Callbacks of this module run on one of the I/O object's own threads,
 * never on the dispatching thread: they report what happened on disk and
 * must not block for long. docs/io.md has one entry per function.
 */
#ifndef CURFEW_IO_H
#define CURFEW_IO_H

#include <curfew/core.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

typedef struct curfew_io curfew_io;
typedef struct curfew_deferred curfew_deferred;
typedef struct curfew_queue curfew_queue;

typedef struct curfew_io_options {
    const char *phase; /* NULL: "persist" (I1) */
    const char *name;  /* the blocker's name; NULL: "curfew io" */
    unsigned threads;  /* I/O threads; 0: 2. Writes to different files
                          run (and fsync) in parallel. */
} curfew_io_options;

/* Makes an I/O object with its own threads; it is one blocker of its phase,
 * which ends only when every write asked for before is durable (I1).
 * Returns 0, -EINVAL (NULL cf/out, unknown phase), -ESHUTDOWN (the phase
 * completed), -ENOMEM, or the error of pthread_create(). Thread: any. */
int curfew_io_create_at(curfew *cf, const curfew_io_options *opts,
                        curfew_io **out, const char *file, int line,
                        const char *func);
/* The macros of this module record the caller's site for the blockers
 * they make (B1), so reports point at the program, not at curfew. */
#define curfew_io_create(cf, opts, out) \
    curfew_io_create_at((cf), (opts), (out), __FILE__, __LINE__, __func__)

/* Stops the threads and frees the object. Returns 0, -EBUSY while work is
 * queued or running, or deferred tasks and queues made on it are not
 * freed yet. Thread: any but the I/O threads. */
int curfew_io_destroy(curfew_io *io);

/* Result callbacks: 0 or the negative errno of the step that failed (I6).
 * They run on an I/O thread. */
typedef void (*curfew_io_cb)(int result, void *arg);

typedef struct curfew_write_options {
    mode_t mode; /* for a new file; 0: 0644 (less the umask). An existing
                    file keeps its mode. */
    int backup;  /* keep the old file as "<path>.bak", with no moment when
                    the target is missing */
} curfew_write_options;

/* Writes data to path atomically (I2): a temporary file in the same
 * directory (O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC), the full data, fsync,
 * rename over path, fsync of the directory. A process killed at any
 * instant leaves path wholly old or wholly new. data is copied. A queued
 * write to the same path not yet started is replaced by this one, and both
 * callbacks run with its result (I3). opts and cb may be NULL. Returns 0
 * (cb follows), -ESHUTDOWN (the phase completed: never silently lost),
 * -EINVAL, -ENOMEM. Thread: any. */
int curfew_write_atomic(curfew_io *io, const char *path, const void *data,
                        size_t len, const curfew_write_options *opts,
                        curfew_io_cb cb, void *arg);

/* Counters: writes asked for, writes that reached the disk, writes
 * coalesced away, failures. Thread: any. */
typedef struct curfew_io_stats {
    uint64_t requested, written, coalesced, failed;
} curfew_io_stats;
int curfew_io_stats_get(const curfew_io *io, curfew_io_stats *out);

/* ---- deferred tasks (I4) ------------------------------------------------ */

typedef void (*curfew_deferred_fn)(curfew_deferred *d, void *arg);

/* A debounced task, as the browser's DeferredTask: it runs delay_ms after
 * the first arm, on an I/O thread. It finalizes itself as a blocker of the
 * io's phase. Returns 0, -EINVAL, -ENOMEM, -ESHUTDOWN. Thread: any. */
int curfew_deferred_create_at(curfew_io *io, const char *name, int32_t delay_ms,
                              curfew_deferred_fn fn, void *arg,
                              curfew_deferred **out, const char *file, int line,
                              const char *func);
#define curfew_deferred_create(io, name, delay_ms, fn, arg, out)            \
    curfew_deferred_create_at((io), (name), (delay_ms), (fn), (arg), (out), \
                              __FILE__, __LINE__, __func__)

/* Arms the task: a run delay_ms from now unless one is already armed (an
 * armed run is never postponed; several arms give one run). Armed while
 * running, it runs again delay_ms after this run ends. Returns 0,
 * -ESHUTDOWN after finalize, -EINVAL. Thread: any. */
int curfew_deferred_arm(curfew_deferred *d);

/* Cancels an armed run (a running one goes on). Returns 0 or -EINVAL.
 * Thread: any. */
int curfew_deferred_disarm(curfew_deferred *d);

/* Runs an armed task at once, waits for a running one, and refuses arms
 * afterwards with -ESHUTDOWN. Returns 0, -EALREADY (finalized before),
 * -EDEADLK (from inside the task), -EINVAL. Blocks. Thread: any. */
int curfew_deferred_finalize(curfew_deferred *d);

/* 1 or 0. Thread: any. */
int curfew_deferred_is_armed(const curfew_deferred *d);
int curfew_deferred_is_running(const curfew_deferred *d);

/* Finalizes if needed and frees. Returns 0 or -EINVAL. Thread: any but
 * the task's own. */
int curfew_deferred_free(curfew_deferred *d);

/* ---- queues (I5) ----------------------------------------------------------
 */

typedef void (*curfew_op_fn)(void *arg);

/* An ordered queue of operations run one at a time, in order, on the I/O
 * threads; one blocker of the io's phase, finished after the queue's close
 * ran (I5). If nobody closes the queue before its phase, the phase's
 * trigger closes it (with no close function). Returns 0, -EINVAL, -ENOMEM,
 * -ESHUTDOWN. Thread: any. */
int curfew_queue_create_at(curfew_io *io, const char *name, curfew_queue **out,
                           const char *file, int line, const char *func);
#define curfew_queue_create(io, name, out) \
    curfew_queue_create_at((io), (name), (out), __FILE__, __LINE__, __func__)

/* Appends an operation. Returns 0, -ESHUTDOWN after the close was queued
 * (never silently dropped), -EINVAL, -ENOMEM. Thread: any. */
int curfew_queue_post(curfew_queue *q, curfew_op_fn fn, void *arg);

/* Puts close_fn (may be NULL) at the end of the queue: it runs after every
 * operation posted before, and then the queue's blocker finishes. Returns
 * 0, -EALREADY, -EINVAL. Thread: any. */
int curfew_queue_close(curfew_queue *q, curfew_op_fn close_fn, void *arg);

/* 1 once the close ran. Thread: any. */
int curfew_queue_is_closed(const curfew_queue *q);

/* Frees a closed queue. Returns 0, -EBUSY (its close has not run yet),
 * -EINVAL. Thread: any but the I/O threads. */
int curfew_queue_free(curfew_queue *q);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_IO_H */
