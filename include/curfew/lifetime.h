/* curfew lifetime (contract section L): the two-phase shutdown of the
 * second source document. Long-lived services ("static objects") register
 * as modules with the modules they use; short-lived objects ("dynamic
 * objects") are counted per module and type. At the end of the dynamic
 * phase anything still alive is a leak; in the static phase modules shut
 * down in reverse dependency order, independent ones in parallel.
 *
 * SPDX-License-Identifier: MIT
 *
 * docs/lifetime.md has one entry per function.
 */
#ifndef CURFEW_LIFETIME_H
#define CURFEW_LIFETIME_H

#include <curfew/core.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

typedef struct curfew_module curfew_module;

typedef struct curfew_module_ops {
    /* Shuts the module down (L2), on the dispatching thread, once every
     * module that uses it is down and nobody is inside it (L4). Returns
     * CURFEW_DONE, CURFEW_PENDING (curfew_module_done() follows, from any
     * thread) or a negative errno (the module counts as down; the error is
     * recorded). NULL: nothing to do. */
    int (*shutdown)(curfew_module *m, void *arg);
} curfew_module_ops;

typedef enum curfew_module_lifecycle {
    CURFEW_MODULE_UP = 0,
    CURFEW_MODULE_STOPPING = 1, /* its shutdown began: enter refuses */
    CURFEW_MODULE_DOWN = 2
} curfew_module_lifecycle;

/* Registers a module named name that uses the modules named in deps (which
 * may be registered later). Returns 0, -EINVAL (NULL argument, empty name,
 * deps NULL with ndeps > 0), -EEXIST (the name is taken), -ELOOP (the
 * dependencies would make a cycle: curfew_module_cycle() names it) (L1),
 * -ESHUTDOWN (the static phase began), -ENOMEM. Thread: any. */
int curfew_module_register(curfew *cf, const char *name,
                           const char *const *deps, unsigned ndeps,
                           const curfew_module_ops *ops, void *arg,
                           curfew_module **out);

/* The cycle of the last registration refused with -ELOOP, as
 * "a -> b -> c -> a", copied into buf (cut to size). Returns its length, 0
 * if none. Thread: any. */
size_t curfew_module_cycle(curfew *cf, char *buf, size_t size);

/* Finishes a shutdown that returned CURFEW_PENDING; err 0 or a negative
 * errno. Returns 0, -EALREADY, -EINVAL. Thread: any. */
int curfew_module_done(curfew_module *m, int err);

/* Enters the module (L4): 0 while it is up, -ESHUTDOWN once its shutdown
 * began, so a late user gets an error instead of a use-after-free. Every
 * 0 must be paired with curfew_module_leave(); the module's shutdown
 * waits until every user has left. Thread: any. */
int curfew_module_enter(curfew_module *m);
void curfew_module_leave(curfew_module *m);

/* A curfew_module_lifecycle value, or -EINVAL. Thread: any. */
int curfew_module_state(const curfew_module *m);
const char *curfew_module_name(const curfew_module *m);

/* Counts a short-lived object of type (L3) made or gone: an atomic
 * counter per module and type, a few nanoseconds. type is usually a string
 * literal; the same text always means the same counter. Returns 0,
 * -EINVAL, -ENOSPC (more than 64 types in one module), -ENOMEM.
 * Thread: any. */
int curfew_live_acquire(curfew_module *m, const char *type);
int curfew_live_release(curfew_module *m, const char *type);

/* As acquire/release, for one object ptr: with the debug mode on, the
 * call site of every live object is kept, so the leak report says where
 * the leaked ones were made. Returns as curfew_live_acquire(); untrack of
 * a pointer not tracked gives -ENOENT in debug mode. Thread: any. */
int curfew_live_track_at(curfew_module *m, const char *type, const void *ptr,
                         const char *file, int line);
int curfew_live_untrack(curfew_module *m, const char *type, const void *ptr);
#define curfew_live_track(m, type, ptr) \
    curfew_live_track_at((m), (type), (ptr), __FILE__, __LINE__)

/* Turns the call-site debug mode on or off for the coordinator's modules
 * (also on when CURFEW_LIVE_DEBUG=1 is in the environment at the first
 * registration). Returns 0 or -EINVAL. Thread: any. */
int curfew_live_debug(curfew *cf, int on);

/* Objects of type alive in the module now. Thread: any. */
int64_t curfew_live_count(const curfew_module *m, const char *type);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_LIFETIME_H */
