/* curfew-report: the model of one curfew document (R3) and its renderers.
 *
 * SPDX-License-Identifier: MIT
 *
 * The loader reads a shutdown record ("curfew-record", R2), a hang report
 * ("curfew-hang", R1) or a state report ("curfew-state") into the model
 * below, checking the type of every field it uses. Input is untrusted: any
 * byte sequence gives a model or -EPROTO with a one-line message, never a
 * crash. Every string in a model is valid UTF-8 without NUL bytes (invalid
 * sequences and NULs became U+FFFD), so renderers only need to escape.
 *
 * The model also carries a timeline: t0/t1 in milliseconds since the
 * shutdown began, for phases, blockers and conditions. A record has those
 * times itself; a hang or state report has only durations and ages, so its
 * completed phases are laid end to end and its conditions end at the
 * report's "now" (see docs/report.md).
 */
#ifndef CURFEW_TOOL_MODEL_H
#define CURFEW_TOOL_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Largest time or age the tool accepts, in ms (about 31 years): sums and
 * conversions to microseconds cannot overflow below it. */
#define CR_TIME_MAX INT64_C(1000000000000)

/* Largest input read, in bytes. */
#define CR_INPUT_MAX ((size_t)1 << 30)

typedef enum cr_kind {
    CR_RECORD = 0, /* "curfew-record" (R2) */
    CR_HANG,       /* "curfew-hang" (R1) */
    CR_STATE       /* "curfew-state" (curfew_report_write_state) */
} cr_kind;

typedef enum cr_result {
    CR_OK = 0,
    CR_ERROR,
    CR_TIMEOUT,
    CR_REMOVED,
    CR_PENDING
} cr_result;

typedef enum cr_phase_state {
    CR_PHASE_NOT_STARTED = 0,
    CR_PHASE_RUNNING,
    CR_PHASE_DONE
} cr_phase_state;

typedef struct cr_blocker {
    const char *name;
    const char *barrier; /* the barrier it belongs to */
    const char *error;   /* NULL unless the record has one */
    const char *status;  /* NULL unless the record has one */
    cr_result result;
    int has_start, has_end; /* the record's start_ms / end_ms were set */
    int64_t start_ms, end_ms;
    int has_code;
    int64_t code;
    /* Timeline: drawn is 0 for a blocker of a phase that never started. */
    int drawn;
    int64_t t0, t1;
} cr_blocker;

typedef struct cr_phase {
    const char *name;
    cr_phase_state state;
    int has_start, has_end; /* record: start_ms / end_ms were set */
    int64_t start_ms, end_ms;
    int has_duration; /* hang/state: duration_ms of a completed phase */
    int64_t duration_ms;
    size_t nblockers;
    cr_blocker *blockers;
    int64_t t0, t1; /* timeline; meaningful unless NOT_STARTED */
} cr_phase;

typedef struct cr_condition {
    const char *name;
    const char *status;   /* may be "" */
    const char *file;     /* NULL when the library had none */
    const char *function; /* NULL when the library had none */
    const char *barrier;
    int64_t line;
    int64_t age_ms;
    int64_t t0, t1;
} cr_condition;

typedef struct cr_broken {
    const char *name;
    const char *error;
    const char *barrier;  /* NULL if absent */
    const char *file;     /* NULL if null */
    const char *function; /* NULL if absent or null */
    int64_t line;
    int has_code;
    int64_t code;
} cr_broken;

typedef struct cr_model cr_model;

/* A child's report (P6), as the child wrote it (curfew_report_add_child).
 * doc is the child's own document when the entry is one (it has a "type")
 * and it loaded; when it did not, error says why (the parent's document is
 * still shown). Without a "type" only the labels are known. */
typedef struct cr_child {
    const char *process; /* NULL if absent */
    int has_pid;
    int64_t pid;
    cr_model *doc;
    const char *error; /* why doc could not be loaded, or NULL */
} cr_child;

struct cr_model {
    cr_kind kind;
    int64_t version;
    int64_t pid;
    const char *process; /* NULL when null */

    /* record (R2) */
    int clean;
    const char *failure;    /* curfew_record_failure's text, or NULL */
    const char *exit_after; /* NULL when null */
    int has_elapsed;        /* the record's elapsed_ms (optional) */
    int64_t elapsed_ms;

    /* hang and state reports (R1) */
    const char *phase; /* NULL when null (a state report before begin) */
    size_t npath;
    const char **barrier_path; /* outermost first */
    int64_t wait_ms;           /* "elapsed_ms": the barrier's wait so far */
    int has_timeout;
    int64_t timeout_ms;
    size_t nconditions;
    cr_condition *conditions;

    /* all kinds */
    size_t nphases;
    cr_phase *phases;
    size_t nbroken;
    cr_broken *broken;
    size_t nchildren;
    cr_child *children;
    /* Keys the format does not define: modules' sections
     * (curfew_report_set_section, e.g. "leaks"), named only. */
    size_t nsections;
    const char **sections;

    /* Timeline end ("now" of the document), ms since begin. */
    int64_t t_end;

    struct cr_arena *arena; /* owns everything above */
};

/* Parses len bytes into *out. Returns 0, -EPROTO (not a curfew document,
 * malformed, truncated, a field missing or of the wrong type; err says
 * which, e.g. "phases[2].blockers[0].end_ms: expected an integer or null,
 * got a string"), or -ENOMEM. err may be NULL when errsize is 0. */
int cr_model_load_buffer(const char *buf, size_t len, cr_model **out, char *err,
                         size_t errsize);

/* Reads path ("-": standard input) and parses it. Returns as
 * cr_model_load_buffer, or the negative errno of reading (err says so). */
int cr_model_load_file(const char *path, cr_model **out, char *err,
                       size_t errsize);

void cr_model_free(cr_model *m);

/* Names, as in the documents. */
const char *cr_kind_name(cr_kind k);
const char *cr_result_name(cr_result r);

/* Decodes one UTF-8 sequence at s (n > 0 bytes available): returns its
 * length and the code point in *cp, or 1 and U+FFFD for an invalid,
 * overlong, surrogate or truncated sequence. */
size_t cr_utf8_next(const char *s, size_t n, uint32_t *cp);

/* Renderers. Each returns 0, or -EIO when writing failed. */

/* Terminal timeline; width is the number of columns (clamped). */
int cr_show(FILE *out, const cr_model *m, int width);
/* Chrome trace-event JSON (Perfetto, chrome://tracing). */
int cr_trace(FILE *out, const cr_model *m);
/* Standalone SVG 1.1 timeline. */
int cr_svg(FILE *out, const cr_model *m);

#endif
