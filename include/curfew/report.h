/* curfew reports: the hang report (R1), the shutdown record (R2) and
 * reading the previous run's record back.
 *
 * SPDX-License-Identifier: MIT
 *
 * docs/report.md describes both JSON formats with an example of each.
 */
#ifndef CURFEW_REPORT_H
#define CURFEW_REPORT_H

#include <curfew/core.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

/* What the previous run's shutdown record says, in a few fixed buffers
 * (strings are NUL-terminated and cut to fit). */
typedef struct curfew_previous {
    int clean;          /* 1: that shutdown completed (or exited fast) */
    int64_t pid;        /* its process id */
    char process[64];   /* its "process" label */
    char phase[128];    /* the last phase that began; "" if none began */
    unsigned pending;   /* blockers still pending in that phase */
    char blockers[512]; /* their names, ", "-separated, cut with "..." */
    char summary[768];  /* one sentence, e.g. "the last shutdown did not
                           finish: blocked in persist by history db" */
} curfew_previous;

/* Reads the shutdown record at path, as left by a previous run with
 * cfg->record_path (call it before this run's curfew_begin() rewrites the
 * file). Returns 0, -ENOENT (no record there), -EPROTO (not a curfew
 * record, malformed or truncated), -EINVAL (NULL argument), -ENOMEM, or
 * the negative errno of reading the file. Thread: any. */
int curfew_record_read_previous(const char *path, curfew_previous *out);

/* Writes a state report like the hang report (R1) but with "type":
 * "curfew-state", naming the innermost waiting barrier (or none), to the
 * descriptor fd, as one line. It neither allocates nor uses stdio. Returns
 * 0 or a negative errno value. Thread: any; not async-signal-safe (it takes
 * curfew's internal lock for short sections). */
int curfew_report_write_state(curfew *cf, int fd);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_REPORT_H */
