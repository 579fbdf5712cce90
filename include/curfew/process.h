/* curfew process trees (contract section P): children started with a
 * control channel, shut down all at once in a parent phase, force-killed
 * when they do not finish, reaped without a zombie, and reporting what
 * they wait for.
 *
 * SPDX-License-Identifier: MIT
 *
 * On each side one thread of curfew's owns the control channels: in the
 * parent it is started by the first spawn or adopt, in the child by
 * curfew_child_attach(). Callbacks of this module run on that thread.
 * docs/process.md describes the protocol and one entry per function.
 */
#ifndef CURFEW_PROCESS_H
#define CURFEW_PROCESS_H

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

/* The child finds its end of the control channel in this environment
 * variable (a descriptor number), and its parent's pid in the second. */
#define CURFEW_CHANNEL_FD_ENV "CURFEW_CHANNEL_FD"
#define CURFEW_PARENT_PID_ENV "CURFEW_PARENT_PID"

/* Message types below this are the control protocol's own. */
#define CURFEW_PROC_MSG_USER 256u

typedef struct curfew_proc curfew_proc;

typedef struct curfew_proc_options {
    const char *name;           /* label: the blocker is "child PID (name)" */
    const char *shutdown_phase; /* NULL: "children" (P2) */
    int32_t kill_after_ms;      /* force-kill timer from Shutdown; 0: 5000,
                                   CURFEW_NEVER: none (P4) */
    char *const *envp;          /* the child's environment; NULL: ours */
    /* A message of the child's (type >= CURFEW_PROC_MSG_USER), on the
     * process thread. Every message the child sent before FinishShutdown
     * arrives here before the child's blocker finishes (P3). */
    void (*on_message)(curfew_proc *p, uint32_t type, const void *data,
                       size_t len, void *arg);
    /* The child was reaped: status as from waitpid(). On the process
     * thread; p stays valid until curfew_proc_free(). */
    void (*on_exit)(curfew_proc *p, int status, void *arg);
    void *arg;
} curfew_proc_options;

/* Starts argv[0] (searched in PATH) with argv and a control channel, by
 * posix_spawn; every descriptor of curfew's is close-on-exec, only the
 * child's end of the channel is passed (P1). Returns 0, -EINVAL, -ENOMEM,
 * -ESHUTDOWN (the shutdown phase completed), or the error of the spawn
 * (-ENOENT for an unknown program). Thread: any. */
int curfew_proc_spawn_at(curfew *cf, char *const argv[],
                         const curfew_proc_options *opts, curfew_proc **out,
                         const char *file, int line, const char *func);
/* The macros record the caller's site for the child's blocker (B1). */
#define curfew_proc_spawn(cf, argv, opts, out)                            \
    curfew_proc_spawn_at((cf), (argv), (opts), (out), __FILE__, __LINE__, \
                         __func__)

/* Adopts a child this process started itself, with fd its end of a
 * connected stream socket whose other end the child reaches through
 * curfew_child_attach() (P1). curfew takes fd and reaps pid. Returns as
 * curfew_proc_spawn(); -ECHILD if pid is not our child. Thread: any. */
int curfew_proc_adopt_at(curfew *cf, pid_t pid, int fd,
                         const curfew_proc_options *opts, curfew_proc **out,
                         const char *file, int line, const char *func);
#define curfew_proc_adopt(cf, pid, fd, opts, out)                              \
    curfew_proc_adopt_at((cf), (pid), (fd), (opts), (out), __FILE__, __LINE__, \
                         __func__)

/* Sends a message (type >= CURFEW_PROC_MSG_USER) to the child. Returns 0,
 * -EINVAL, -ENOMEM, -EPIPE (the child is gone or finishing). Thread: any. */
int curfew_proc_send(curfew_proc *p, uint32_t type, const void *data,
                     size_t len);

pid_t curfew_proc_pid(const curfew_proc *p);

/* 1 once reaped, with *status as from waitpid() (may be NULL). */
int curfew_proc_exited(const curfew_proc *p, int *status);

/* Frees a reaped child's handle. Returns 0, -EBUSY (not reaped yet: the
 * shutdown will kill and reap it), -EINVAL. Thread: any but the process
 * thread. */
int curfew_proc_free(curfew_proc *p);

/* ---- the child's side -----------------------------------------------------
 */

typedef struct curfew_child_options {
    /* FinishShutdown is sent when this phase completes; NULL: cfg's
     * exit_after, or else the last phase (P3). */
    const char *finish_after;
    /* After FinishShutdown: 1 exits at once with exit_code (the release
     * build's path); 0 runs the remaining phases (full teardown). */
    int fast_exit;
    int exit_code;
    /* Orphan (P8): when the channel closes without Shutdown, the shutdown
     * begins with this budget and the process exits when it completed or
     * the budget ran out, with orphan_exit_code. 0: 5000 ms. */
    int32_t orphan_budget_ms;
    int orphan_exit_code;
    /* A message of the parent's (type >= CURFEW_PROC_MSG_USER), on the
     * child's process thread. */
    void (*on_message)(uint32_t type, const void *data, size_t len, void *arg);
    void *arg;
} curfew_child_options;

/* Joins the parent whose channel the environment names (P1): starts the
 * child's process thread, which begins the shutdown on Shutdown (with the
 * parent's remaining budget, P7) or when orphaned (P8), sends the pending
 * blockers' names as status (P5), the hang report before the watchdog acts
 * (P6), and FinishShutdown at the configured point (P3). Sets
 * PR_SET_PDEATHSIG to SIGTERM as a second guard on Linux. Call before
 * curfew_begin. Returns 0, -ENOENT (no channel in the environment),
 * -EINVAL, -EALREADY, -ENOMEM, -EBUSY (the shutdown began).
 * Thread: any. */
int curfew_child_attach(curfew *cf);
int curfew_child_attach_opts(curfew *cf, const curfew_child_options *opts);

/* Sends a message (type >= CURFEW_PROC_MSG_USER) to the parent, after every
 * message sent before (P3). Returns 0, -EINVAL, -ENOMEM, -EPIPE, -ENOENT
 * (not attached). Thread: any. */
int curfew_child_send(curfew *cf, uint32_t type, const void *data, size_t len);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_PROCESS_H */
