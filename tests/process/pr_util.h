/* Helpers shared by the process tests (tests/process/test_*.c): a scratch
 * directory per test, real curfew children started from this binary, the
 * parent's shutdown record read back, and a look at /proc for zombies.
 *
 * SPDX-License-Identifier: MIT
 *
 * Every child is this test binary again: `--child pr_kid key=value...`
 * (pr_child.c) is a small curfew program whose behaviour the arguments
 * choose; the keys are listed there.
 */
#ifndef CURFEW_TEST_PR_UTIL_H
#define CURFEW_TEST_PR_UTIL_H

#include "harness.h"
#include "report/jsonr.h"

#include <curfew.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PR_PATH 512

/* User message types of the child helper (>= CURFEW_PROC_MSG_USER). */
#define PR_MSG_STAMP 300u /* at the child's BEGIN: mono ns, budget left */
#define PR_MSG_EARLY 301u /* right after attach: u32 sequence number */
#define PR_MSG_FLOOD 302u /* in the child's last phase: u32 sequence */
#define PR_MSG_PING 303u  /* parent -> child: u32 sequence */
#define PR_MSG_PONG 304u  /* child -> parent: the ping's sequence */

/* 1 in a ThreadSanitizer build, 1 in an AddressSanitizer build. */
int pr_tsan(void);
int pr_asan(void);

/* Test start: a scratch directory (kept with a note on failure, removed by
 * pr_done), TSan's exit sleep turned off for the children, and an alarm
 * that ends a hung test after seconds with a message. */
void pr_begin(char *dir, size_t size, unsigned seconds);
void pr_done(const char *dir);
void pr_path(char *out, size_t size, const char *dir, const char *name);
/* The whole file, NUL-terminated (len without the NUL; may be NULL), or
 * NULL when it cannot be read. */
char *pr_read_file(const char *path, size_t *len);

/* A coordinator with the default phases, the record written to
 * dir/record.json (the path goes to rec, which may be NULL). */
curfew *pr_parent(const char *dir, curfew_config *cfg, char *rec,
                  size_t rec_size);

/* Starts `pr_kid` with the given key=value arguments (NULL-terminated)
 * through curfew_proc_spawn(); fails the test on error. */
curfew_proc *pr_spawn(curfew *cf, const curfew_proc_options *opts, ...);

/* A pipe whose write end (not close-on-exec) the children inherit: each
 * child writes one byte once attached ("ready=FD"). */
typedef struct pr_ready {
    int rfd, wfd;
    char arg[32]; /* "ready=N" */
} pr_ready;
void pr_ready_open(pr_ready *r);
/* Waits until n children said so (fails after timeout_ms). */
void pr_ready_wait(pr_ready *r, int n, int64_t timeout_ms);
void pr_ready_close(pr_ready *r);

/* Waits until curfew reaped p (fails after timeout_ms); its wait status. */
int pr_wait_exited(curfew_proc *p, int64_t timeout_ms);

/* Children of this process in /proc, in all (*zombies: those in state Z;
 * may be NULL). */
int pr_children(int *zombies);

/* What the children sent, collected by pr_on_message (the process thread)
 * and pr_on_exit; read it under mu. */
#define PR_MAX_KIDS 128
typedef struct pr_msgs {
    pthread_mutex_t mu;
    int nstamps; /* PR_MSG_STAMP: one per child */
    pid_t stamp_pid[PR_MAX_KIDS];
    int64_t stamp_ns[PR_MAX_KIDS], stamp_budget[PR_MAX_KIDS];
    /* PR_MSG_FLOOD, PR_MSG_EARLY, PR_MSG_PONG: the next sequence number
     * expected (so, how many arrived in order), over all children. */
    uint32_t flood, early, pong;
    int disorder;   /* a sequence number that was not the next one */
    uint64_t bytes; /* payload bytes of every user message */
    int nexits;     /* on_exit calls */
    pid_t exit_pid[PR_MAX_KIDS];
    int exit_status[PR_MAX_KIDS];
} pr_msgs;
void pr_msgs_init(pr_msgs *m);
void pr_on_message(curfew_proc *p, uint32_t type, const void *data, size_t len,
                   void *arg);
void pr_on_exit(curfew_proc *p, int status, void *arg);
/* The options pr_on_message/pr_on_exit need, with the label. */
curfew_proc_options pr_opts(const char *label, pr_msgs *m);

/* ---- JSON ---------------------------------------------------------------- */

curfew__jval *pr_parse_file(const char *path);
curfew__jval *pr_parse_text(const char *text, size_t len);
/* o[key] of type t, failing the test otherwise. */
const curfew__jval *pr_jget(const curfew__jval *o, const char *key,
                            curfew__jtype t);
const char *pr_jstr(const curfew__jval *o, const char *key);
int64_t pr_jint(const curfew__jval *o, const char *key);
/* The record's phase called name (fails if absent). */
const curfew__jval *pr_phase(const curfew__jval *rec, const char *name);
/* end_ms - start_ms of that phase (fails unless both are numbers). */
int64_t pr_phase_ms(const curfew__jval *rec, const char *name);
/* The blocker called name in any phase of the record, or NULL. */
const curfew__jval *pr_blocker(const curfew__jval *rec, const char *name);
/* "child PID (label)", the name curfew gives a child's blocker (P2). */
void pr_child_name(char *out, size_t size, curfew_proc *p, const char *label);

/* Big-endian u32/u64 in message payloads. */
void pr_put32(unsigned char *b, uint32_t v);
uint32_t pr_get32(const unsigned char *b);
void pr_put64(unsigned char *b, uint64_t v);
uint64_t pr_get64(const unsigned char *b);

int64_t pr_mono_ns(void);

#endif
