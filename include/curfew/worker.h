/* curfew workers (contract section K): threads with a task queue whose
 * lifecycle only moves forward, strong and weak references, and a final
 * hook that runs exactly once before the worker counts as finished.
 *
 * SPDX-License-Identifier: MIT
 *
 * The first source document is a bug where a worker was counted as done
 * when it began cancelling, so its process tore down before the worker's
 * final report went out. Here a worker attached to a phase finishes its
 * blocker only when it is DEAD, after on_killing ran (K4).
 *
 *   PENDING -> RUNNING -> [CLOSING] -> CANCELING -> KILLING -> DEAD
 *
 * docs/worker.md has the state diagram and one entry per function.
 */
#ifndef CURFEW_WORKER_H
#define CURFEW_WORKER_H

#include <curfew/core.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

typedef struct curfew_worker curfew_worker;
typedef struct curfew_worker_ref curfew_worker_ref;

/* Worker states (K1), in the only order they can come. */
typedef enum curfew_worker_lifecycle {
    CURFEW_WORKER_PENDING = 0,   /* made; its thread has not run yet */
    CURFEW_WORKER_RUNNING = 1,   /* runs tasks */
    CURFEW_WORKER_CLOSING = 2,   /* closed itself: no new tasks; queued ones
                                    still run */
    CURFEW_WORKER_CANCELING = 3, /* asked to stop: skippable tasks dropped,
                                    waits for strong references */
    CURFEW_WORKER_KILLING = 4,   /* only on_killing runs now */
    CURFEW_WORKER_DEAD = 5       /* on_killing returned; thread ending */
} curfew_worker_lifecycle;

/* What becomes of a task not started when the worker is cancelled (K3). */
typedef enum curfew_task_behavior {
    CURFEW_TASK_BLOCK_SHUTDOWN = 0,  /* runs before the worker dies */
    CURFEW_TASK_SKIP_ON_SHUTDOWN = 1 /* dropped, counted, reported */
} curfew_task_behavior;

typedef void (*curfew_task_fn)(curfew_worker *w, void *arg);

typedef struct curfew_worker_config {
    const char *name; /* for reports; copied; NULL: "worker" */
    /* With cf set, the worker is one blocker of phase (NULL: "threads")
     * of cf: the phase's trigger cancels it, and the blocker finishes only
     * at DEAD, after on_killing (K4). */
    curfew *cf;
    const char *phase;
    /* On the worker's thread, exactly once, when it reaches KILLING (K4):
     * the place for final reports. */
    void (*on_killing)(curfew_worker *w, void *arg);
    void *arg;
} curfew_worker_config;

/* Starts a worker thread. Returns 0, -EINVAL (NULL cfg/out, unknown
 * phase), -ENOMEM, -ESHUTDOWN (cf's phase completed), or the error of
 * pthread_create(). Thread: any. */
int curfew_worker_start_at(const curfew_worker_config *cfg, curfew_worker **out,
                           const char *file, int line, const char *func);
/* The macro records the caller's site for the worker's blocker (B1). */
#define curfew_worker_start(cfg, out) \
    curfew_worker_start_at((cfg), (out), __FILE__, __LINE__, __func__)

/* Queues a task. Returns 0, -ESHUTDOWN once the worker is CLOSING or
 * later (never silently dropped), -EINVAL, -ENOMEM. Thread: any, the
 * worker's own included. */
int curfew_worker_post(curfew_worker *w, curfew_task_behavior behavior,
                       curfew_task_fn fn, void *arg);

/* The worker closes itself (CLOSING): no new tasks; the queued ones run,
 * then it goes on to CANCELING. Returns 0, -EALREADY (CLOSING or later),
 * -EINVAL. Thread: any (usually a task of the worker). */
int curfew_worker_close(curfew_worker *w);

/* Asks the worker to stop (CANCELING): tasks posted with
 * CURFEW_TASK_SKIP_ON_SHUTDOWN that have not started are dropped and
 * counted, weak references are told, and the worker waits for its strong
 * references before KILLING. Returns 0, -EALREADY (CANCELING or later),
 * -EINVAL. Thread: any. */
int curfew_worker_cancel(curfew_worker *w);

/* A curfew_worker_lifecycle value (K1), or -EINVAL. Thread: any. */
int curfew_worker_state(const curfew_worker *w);

/* Waits until the worker is DEAD and its thread has ended: at most
 * timeout_ms (CURFEW_NEVER: no limit). Returns 0, -ETIMEDOUT, -EDEADLK
 * (called on the worker's own thread), -EINVAL. Thread: any other. */
int curfew_worker_join(curfew_worker *w, int32_t timeout_ms);

/* Joins and frees a DEAD worker. Returns 0, -EBUSY (not DEAD, or weak
 * references not yet released), -EINVAL. Thread: any other than the
 * worker's. */
int curfew_worker_free(curfew_worker *w);

/* Counters (K3): tasks run, tasks dropped at CANCELING. Thread: any. */
typedef struct curfew_worker_stats {
    uint64_t tasks_run;
    uint64_t tasks_skipped;
    uint32_t strong_refs, weak_refs;
} curfew_worker_stats;
int curfew_worker_stats_get(const curfew_worker *w, curfew_worker_stats *out);

/* A strong reference keeps the worker from going from CANCELING to
 * KILLING until released (K2); its name and call site appear in reports
 * while the worker waits for it (K5). Returns 0, -ESHUTDOWN (CANCELING or
 * later), -EINVAL, -ENOMEM. Thread: any. */
int curfew_worker_ref_strong_at(curfew_worker *w, const char *name,
                                curfew_worker_ref **out, const char *file,
                                int line, const char *func);
#define curfew_worker_ref_strong(w, name, out)                          \
    curfew_worker_ref_strong_at((w), (name), (out), __FILE__, __LINE__, \
                                __func__)

/* A weak reference does not hold the worker; on_canceling runs once, on
 * the worker's thread, when it reaches CANCELING (K2). It must still be
 * released. Returns as curfew_worker_ref_strong_at(). Thread: any. */
int curfew_worker_ref_weak_at(curfew_worker *w, const char *name,
                              void (*on_canceling)(curfew_worker_ref *ref,
                                                   void *arg),
                              void *arg, curfew_worker_ref **out,
                              const char *file, int line, const char *func);
#define curfew_worker_ref_weak(w, name, on_canceling, arg, out)          \
    curfew_worker_ref_weak_at((w), (name), (on_canceling), (arg), (out), \
                              __FILE__, __LINE__, __func__)

/* Releases a reference (strong or weak) and frees it. Returns 0 or
 * -EINVAL. Thread: any. */
int curfew_worker_ref_release(curfew_worker_ref *ref);

/* The worker a reference belongs to. Thread: any. */
curfew_worker *curfew_worker_ref_worker(const curfew_worker_ref *ref);

/* Writes "name (file:line in func)" for each strong reference held,
 * joined by ", ", into buf (cut to size). Returns the number of strong
 * references. Thread: any. */
int curfew_worker_describe_refs(const curfew_worker *w, char *buf, size_t size);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_WORKER_H */
