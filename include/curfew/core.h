/* curfew core: the coordinator, its phases, barriers, blockers and dispatch.
 *
 * SPDX-License-Identifier: MIT
 *
 * Every function returns 0 (or a documented non-negative value) on success
 * and a negative errno value on failure; curfew_strerror() names them.
 * docs/core.md has one entry per function with an example.
 */
#ifndef CURFEW_CORE_H
#define CURFEW_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility; what this header declares
 * is its public interface. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CURFEW__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CURFEW__PRINTF(f, a)
#endif

/* A timeout field set to CURFEW_NEVER turns that timeout off; 0 means "the
 * default". */
#define CURFEW_NEVER (-1)

/* Trigger results (B2). Negative values are errors (B3). */
#define CURFEW_DONE 0
#define CURFEW_PENDING 1

/* Longest status text kept per blocker, in bytes, without the NUL (B7). */
#define CURFEW_STATUS_MAX 256

typedef struct curfew curfew;
typedef struct curfew_barrier curfew_barrier;

/* A blocker handle is a small value (B1): the coordinator and an id that
 * carries a generation, so a stale handle is detected (-ENOENT) instead of
 * touching memory that was reused. A zero handle is never valid. */
typedef struct curfew_blocker {
    curfew *cf;
    uint64_t id;
} curfew_blocker;

/* What the watchdog does when a barrier passes crash_after_ms (W3). */
typedef enum curfew_timeout_action {
    CURFEW_TIMEOUT_ABORT = 0,   /* abort(): core dump, crash reporters */
    CURFEW_TIMEOUT_EXIT = 1,    /* _exit(timeout_exit_code) */
    CURFEW_TIMEOUT_CONTINUE = 2 /* mark pending blockers timeout, go on */
} curfew_timeout_action;

/* Barrier states (N3). */
typedef enum curfew_wait_state {
    CURFEW_NOT_STARTED = 0,
    CURFEW_WAITING = 1,
    CURFEW_COMPLETE = 2
} curfew_wait_state;

/* Events reported through cfg->on_event (D4). */
typedef enum curfew_event_type {
    CURFEW_EV_BEGIN = 1,          /* shutdown began */
    CURFEW_EV_PHASE_BEGIN = 2,    /* a phase started waiting */
    CURFEW_EV_PHASE_END = 3,      /* a phase completed; duration_ms set */
    CURFEW_EV_BLOCKER_FAILED = 4, /* blocker, error and text set */
    CURFEW_EV_WARNING = 5,        /* a barrier passed warn_after_ms */
    CURFEW_EV_HANG = 6,           /* a barrier passed crash_after_ms */
    CURFEW_EV_COMPLETE = 7,       /* every phase completed */
    CURFEW_EV_NOTICE = 8          /* text from curfew_notice() */
} curfew_event_type;

typedef struct curfew_event {
    curfew_event_type type;
    const char *phase;   /* the phase concerned, or NULL */
    const char *barrier; /* the barrier concerned (a phase's barrier has
                            the phase's name), or NULL */
    const char *blocker; /* BLOCKER_FAILED: the blocker's name */
    int error;           /* BLOCKER_FAILED: the negative errno value */
    const char *text;    /* BLOCKER_FAILED: what failed; WARNING: the
                            pending blockers, one "name (status)" a line;
                            HANG: the report's path, or NULL (stderr) */
    int64_t duration_ms; /* PHASE_END, COMPLETE: how long it took; HANG:
                            how long the barrier waited */
    int64_t elapsed_ms;  /* milliseconds since the shutdown began */
} curfew_event;

typedef void (*curfew_event_fn)(const curfew_event *ev, void *arg);

/* Called on the dispatching thread (B2). Returns CURFEW_DONE, CURFEW_PENDING
 * (curfew_blocker_done() follows later, from any thread) or a negative
 * errno value (the blocker fails, B3). */
typedef int (*curfew_trigger_fn)(curfew_blocker self, void *arg);

typedef struct curfew_phase_config {
    const char *name;
    int32_t warn_after_ms;  /* 0: the coordinator's; CURFEW_NEVER: off */
    int32_t crash_after_ms; /* 0: the coordinator's; CURFEW_NEVER: off */
} curfew_phase_config;

/* A zero-initialised curfew_config means "all defaults" (C1). Strings are
 * copied by curfew_create(). */
typedef struct curfew_config {
    const curfew_phase_config *phases; /* NULL or 0 phases: the defaults */
    unsigned phase_count;
    int32_t warn_after_ms;  /* 0: 10000 */
    int32_t crash_after_ms; /* 0: 60000 */
    curfew_timeout_action on_timeout;
    int timeout_exit_code;    /* 0: 70 (EX_SOFTWARE) */
    const char *report_path;  /* hang report, written atomically (W3) */
    const char *record_path;  /* shutdown record (R2) */
    const char *process_name; /* label in reports; NULL: the program name */
    int64_t budget_ms;        /* whole shutdown budget (W5); 0: none */
    int32_t budget_margin_ms; /* 0: 500 */
    const char *exit_after;   /* fast exit after this phase (C5); NULL: no */
    int exit_code;            /* the status of that fast exit */
    curfew_event_fn on_event;
    void *event_arg;
    const char *dynamic_phase; /* NULL: "threads" (L3) */
    const char *static_phase;  /* NULL: "final" (L2) */
    int strict_leaks;          /* nonzero: leaks fail the shutdown (L3) */
} curfew_config;

/* Per-barrier timers (N2); 0 takes the coordinator's default, CURFEW_NEVER
 * turns the timer off. */
typedef struct curfew_barrier_config {
    int32_t warn_after_ms;
    int32_t crash_after_ms;
} curfew_barrier_config;

/* ---- coordinator ------------------------------------------------------ */

/* Makes a coordinator (C1). cfg may be NULL. Returns 0, -EINVAL (NULL out,
 * empty or duplicate phase name, exit_after/dynamic_phase/static_phase not a
 * phase, a negative timeout other than CURFEW_NEVER, an unknown on_timeout),
 * -ENOMEM, or the error of eventfd(). Starts no thread (C6).
 * Thread: any. */
int curfew_create(curfew **out, const curfew_config *cfg);

/* Frees the coordinator and everything it owns, including barriers.
 * Returns 0, or -EBUSY while a shutdown has begun and not completed (then
 * nothing is freed). Handles must not be used afterwards. NULL is a no-op.
 * Thread: any one thread, with no other thread using cf. */
int curfew_destroy(curfew *cf);

/* Names a return value of this library, e.g. "-EALREADY: already done".
 * Never returns NULL; the string is static. Thread: any. */
const char *curfew_strerror(int err);

/* The barrier of the named phase (C2), or NULL. Thread: any. */
curfew_barrier *curfew_phase(curfew *cf, const char *name);

/* Number of phases, and the name of phase i (NULL if out of range).
 * Thread: any. */
unsigned curfew_phase_count(const curfew *cf);
const char *curfew_phase_name(const curfew *cf, unsigned i);

/* The phase after which the process exits at once (cfg->exit_after, C5), or
 * NULL when it runs every phase (and for a NULL cf). For modules that must
 * act before that exit, such as a child's FinishShutdown (P3).
 * Thread: any. */
const char *curfew_exit_after(const curfew *cf);

/* Starts the shutdown (C3). Returns 0, -EALREADY when it had begun, -EINVAL
 * for NULL. Thread: any. */
int curfew_begin(curfew *cf);

/* As curfew_begin(), and async-signal-safe: it only stores atomics and
 * writes the wake-up descriptor. Thread: any, signal handlers included. */
int curfew_begin_from_signal(curfew *cf);

/* 1 if shutdown has begun and the named phase is running or done, 0 if not,
 * -EINVAL for an unknown name or NULL (C4). Thread: any. */
int curfew_in_or_beyond(const curfew *cf, const char *phase);

/* The name of the phase in progress: NULL before curfew_begin(), the first
 * phase from curfew_begin() on, the last phase once all completed (C4).
 * Thread: any. */
const char *curfew_current_phase(const curfew *cf);

/* ---- driving (D) -------------------------------------------------------- */

/* A descriptor that becomes readable when curfew has work for
 * curfew_dispatch() (D1). Owned by cf; do not close or read it.
 * Thread: any. */
int curfew_fd(const curfew *cf);

/* Milliseconds until curfew_dispatch() must run again even if curfew_fd()
 * stays quiet: -1 none, 0 now (D1). Thread: any. */
int curfew_timeout_ms(const curfew *cf);

/* Runs pending triggers, completions and phase changes on the calling
 * thread; never blocks (D1). Returns 1 once the whole shutdown completed,
 * 0 while it goes on or before it began, -EPERM when another thread is
 * dispatching or when called from inside a callback (D5), -EINVAL for NULL.
 * Thread: any, one at a time. */
int curfew_dispatch(curfew *cf);

/* Blocks until a shutdown has begun (from any thread or a signal handler)
 * and completed, dispatching on the calling thread (D2). Returns 0, also
 * when blockers failed or timed out; -EPERM as curfew_dispatch(); -EINVAL.
 * Thread: any, one at a time. */
int curfew_run(curfew *cf);

/* 1 once every phase completed, else 0. Thread: any. */
int curfew_is_complete(const curfew *cf);

/* ---- barriers (N) ------------------------------------------------------- */

/* Makes a barrier owned by a service (N1); bcfg may be NULL. The barrier
 * lives until curfew_destroy(). Returns 0, -EINVAL (NULL cf/out, NULL or
 * empty name, bad timeouts), -ENOMEM. Thread: any. */
int curfew_barrier_create(curfew *cf, const char *name,
                          const curfew_barrier_config *bcfg,
                          curfew_barrier **out);

/* Makes inner's whole wait one blocker, named name, of outer (N1). Returns
 * 0, -EINVAL (NULL argument, empty name, inner == outer, inner is a phase),
 * -ELOOP (a cycle; checked before the errors below), -EALREADY (inner waits
 * in an outer barrier already), -ESHUTDOWN (outer completed), -ENOMEM.
 * A macro records the call site. Thread: any. */
int curfew_barrier_wait_in_at(curfew_barrier *inner, curfew_barrier *outer,
                              const char *name, const char *file, int line,
                              const char *func);
#define curfew_barrier_wait_in(inner, outer, name)                          \
    curfew_barrier_wait_in_at((inner), (outer), (name), __FILE__, __LINE__, \
                              __func__)

/* CURFEW_NOT_STARTED, CURFEW_WAITING or CURFEW_COMPLETE (N3); -EINVAL for
 * NULL. Thread: any. */
int curfew_barrier_state(const curfew_barrier *barrier);

/* The barrier's name. Thread: any. */
const char *curfew_barrier_name(const curfew_barrier *barrier);

/* ---- blockers (B) ------------------------------------------------------- */

/* Adds a blocker to barrier (B1, B2). trigger may be NULL (nothing to start:
 * wait for curfew_blocker_done()). out may be NULL when the blocker finishes
 * only through its trigger. Returns 0, -EINVAL (NULL barrier, NULL or empty
 * name), -ESHUTDOWN (the barrier completed), -ENOMEM. Every failure with a
 * barrier is remembered as a broken registration (B5). The name is copied.
 * Thread: any. */
int curfew_add_blocker_at(curfew_barrier *barrier, const char *name,
                          curfew_trigger_fn trigger, void *arg,
                          curfew_blocker *out, const char *file, int line,
                          const char *func);
#define curfew_add_blocker(barrier, name, trigger, arg, out)          \
    curfew_add_blocker_at((barrier), (name), (trigger), (arg), (out), \
                          __FILE__, __LINE__, __func__)

/* Finishes the blocker (B4). Returns 0 the first time, -EALREADY after,
 * -ENOENT for an unknown or recycled id, -EINVAL for a NULL coordinator.
 * Before its trigger ran, the trigger is not called. Thread: any. */
int curfew_blocker_done(curfew_blocker b);

/* Finishes the blocker as failed (B3): err is a negative errno value (a
 * positive one is negated, 0 becomes -ECANCELED), what says what failed
 * (copied, may be NULL). The phase goes on; the error reaches on_event and
 * the record. Returns as curfew_blocker_done(). Thread: any. */
int curfew_blocker_fail(curfew_blocker b, int err, const char *what);

/* Finishes the blocker with result CURFEW_RESULT_TIMEOUT, for modules that
 * keep their own deadlines (a child process force-killed, P4); what says
 * why (copied, may be NULL). Returns as curfew_blocker_done().
 * Thread: any. */
int curfew_blocker_expire(curfew_blocker b, const char *what);

/* Stops waits from waiting for the blocker (B6). Returns 0 if it was not
 * finished, -ENOENT otherwise (finished, unknown, recycled). Thread: any,
 * the blocker's own trigger included. */
int curfew_remove_blocker(curfew_blocker b);

/* Replaces the blocker's status text (B7), cut to CURFEW_STATUS_MAX bytes on
 * a UTF-8 boundary. Returns 0, -ENOENT, -EINVAL (NULL fmt), -ENOMEM.
 * Thread: any. */
int curfew_blocker_status(curfew_blocker b, const char *fmt, ...)
    CURFEW__PRINTF(2, 3);
int curfew_blocker_vstatus(curfew_blocker b, const char *fmt, va_list ap)
    CURFEW__PRINTF(2, 0);

/* Copies the blocker's name and latest status into the given buffers (either
 * may be NULL), NUL-terminated and cut to their size. Returns 1 if the
 * blocker is finished, 0 if not, -ENOENT. Thread: any. */
int curfew_blocker_describe(curfew_blocker b, char *name, unsigned name_size,
                            char *status, unsigned status_size);

/* What became of a blocker. */
typedef enum curfew_result {
    CURFEW_RESULT_PENDING = 0, /* not finished */
    CURFEW_RESULT_OK = 1,      /* done */
    CURFEW_RESULT_ERROR = 2,   /* failed (B3) */
    CURFEW_RESULT_TIMEOUT = 3, /* marked timeout by the watchdog (W3) */
    CURFEW_RESULT_REMOVED = 4  /* removed (B6) */
} curfew_result;

/* The blocker's result (a curfew_result), and in *err (may be NULL) its
 * error, 0 unless CURFEW_RESULT_ERROR. Returns -ENOENT for an unknown or
 * recycled id. Thread: any. */
int curfew_blocker_result(curfew_blocker b, int *err);

/* ---- for modules built on the core -------------------------------------- */

/* Queues a CURFEW_EV_NOTICE event with text (copied) and barrier (may be
 * NULL) for on_event, on the dispatching thread at its next dispatch (or
 * the first one after curfew_begin). Modules use it to report what the
 * shutdown found (the lifetime module's leaks). Returns 0, -EINVAL,
 * -ENOMEM. Thread: any. */
int curfew_notice(curfew *cf, const curfew_barrier *barrier, const char *text);

/* Per-coordinator state of a module above the core: key is any address
 * the module owns (e.g. of a static variable). curfew_ext_set() stores ptr
 * and calls free_fn(ptr) at curfew_destroy(); it fails with -EEXIST if the
 * key is taken. curfew_ext_get() returns the pointer or NULL. Thread: any. */
int curfew_ext_set(curfew *cf, const void *key, void *ptr,
                   void (*free_fn)(void *ptr));
void *curfew_ext_get(curfew *cf, const void *key);

/* Adds a listener that receives every event after cfg->on_event, on the
 * same thread (the dispatching thread; the watchdog thread for HANG).
 * Modules use it to act at phase boundaries. Returns 0, -EINVAL, -ENOMEM,
 * -EBUSY (after curfew_begin: listeners are fixed when a shutdown starts).
 * Thread: any. */
int curfew_listen(curfew *cf, curfew_event_fn fn, void *arg);

/* Sets budget_ms (W5) before the shutdown begins, e.g. from a parent
 * process's Shutdown message (P7) or the environment (S3). Returns 0,
 * -EINVAL (negative), -EALREADY (the shutdown began). Thread: any. */
int curfew_set_budget(curfew *cf, int64_t budget_ms);

/* Milliseconds left of budget_ms since curfew_begin (the whole budget
 * before it), 0 when spent, -1 without a budget. Thread: any. */
int64_t curfew_budget_left_ms(const curfew *cf);

/* The pending blockers of the innermost waiting barrier, as
 * "phase: name (status), name ..." (cut to size, NUL-terminated); "" when
 * nothing waits. Returns the length. Thread: any. */
size_t curfew_pending_summary(curfew *cf, char *buf, size_t size);

/* The lifetime settings of the configuration after defaults (L2, L3): the
 * dynamic and static phases' names (NULL when the phase list has no such
 * phase) and strict_leaks. Any pointer may be NULL. Returns 0 or -EINVAL.
 * Thread: any. */
int curfew_lifetime_settings(const curfew *cf, const char **dynamic_phase,
                             const char **static_phase, int *strict_leaks);

/* ---- diagnostics -------------------------------------------------------- */

/* A failed registration (B5). The strings live as long as the coordinator. */
typedef struct curfew_broken_registration {
    const char *name; /* "(null)" when the name was NULL */
    int error;        /* the negative errno value the add returned */
    const char *barrier;
    const char *file;
    int line;
    const char *func;
} curfew_broken_registration;

/* Copies up to max broken registrations, oldest first, into out (may be NULL
 * when max is 0). Returns how many there are in all, or -EINVAL.
 * Thread: any. */
int curfew_broken_registrations(curfew *cf, curfew_broken_registration *out,
                                unsigned max);

/* The timeouts a barrier will use, after defaults are applied: a number of
 * milliseconds or CURFEW_NEVER (N2). Returns 0 or -EINVAL. Thread: any. */
int curfew_barrier_timeouts(const curfew_barrier *barrier, int32_t *warn_ms,
                            int32_t *crash_ms);

/* Counters, for tests and benchmarks. */
typedef struct curfew_stats {
    uint64_t wakeups;    /* writes to curfew_fd() (coalesced, D3) */
    uint64_t dispatches; /* curfew_dispatch() calls that did work */
    uint64_t blockers;   /* blockers added in all */
    uint64_t live_slots; /* blocker slots in use (not reusable) */
} curfew_stats;

/* Fills *out. Returns 0 or -EINVAL. Thread: any. */
int curfew_stats_get(const curfew *cf, curfew_stats *out);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_CORE_H */
