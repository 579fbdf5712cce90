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
#include <stddef.h>
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

/* As curfew_report_write_state(), with "type": "curfew-hang": what a hang
 * event's listener sends when the watchdog had no report_path (P6).
 * Returns 0 or a negative errno value. Thread: any. */
int curfew_report_write_hang(curfew *cf, int fd);

/* Appends a child process's hang report (one JSON object, as the child
 * wrote it) to "children" in every report and record written after (P6).
 * The text is checked and copied. Returns 0, -EINVAL (NULL, or not one JSON
 * object), -ENOMEM. Thread: any. */
int curfew_report_add_child(curfew *cf, const char *json, size_t len);

/* Sets "key": json (one JSON value, checked and copied) in every report
 * and record written after, replacing an earlier value of the same key.
 * Modules use it for their own sections ("leaks" of the lifetime module).
 * Keys the formats define themselves are refused. Returns 0, -EINVAL,
 * -ENOMEM. Thread: any. */
int curfew_report_set_section(curfew *cf, const char *key, const char *json,
                              size_t len);

/* Marks the shutdown as failed even though its phases may complete: the
 * record then says "clean": false and gives "failure" (what, and the
 * error). The first call wins. Returns 0, -EALREADY, -EINVAL, -ENOMEM.
 * Thread: any. */
int curfew_record_failure(curfew *cf, int err, const char *what);

/* Rewrites the shutdown record (R2) at cfg->record_path now, atomically,
 * as the dispatching thread does at every phase change: for a program
 * about to exit at once (the second SIGINT of S1). Returns 0, -ENOENT (no
 * record_path), -EINVAL (NULL), or the negative errno of writing the file.
 * Thread: any; not async-signal-safe (it takes curfew's internal locks for
 * short sections). */
int curfew_record_write_now(curfew *cf);

/* How many blockers of cf have finished (done, failed, timed out or
 * removed) since curfew_create(), nested barriers' stand-ins included: a
 * number that grows while a shutdown makes progress, for progress checks
 * (the service-manager extensions of S2). A blocker being added at the
 * same moment may make one call read one less. Returns the count, or
 * -EINVAL. Thread: any. */
int64_t curfew_blockers_finished(curfew *cf);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* CURFEW_REPORT_H */
