/* A streaming JSON writer that neither allocates nor uses stdio (W4): it
 * stages output in a caller-provided buffer and writes it to a descriptor,
 * so a hang inside malloc or a held stdio lock cannot stop a report.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_REPORT_JSONW_H
#define CURFEW_REPORT_JSONW_H

#include <stddef.h>
#include <stdint.h>

#define CURFEW__JW_MAXDEPTH 32

typedef struct curfew__jw {
    int fd; /* -1: the buffer is the whole output */
    char *buf;
    size_t cap, len;
    size_t total; /* bytes produced in all */
    int err;      /* first error, a negative errno value */
    int depth;
    int after_key;
    uint8_t count[CURFEW__JW_MAXDEPTH]; /* 0: no element yet at depth */
} curfew__jw;

/* Writes to fd through buf; with fd == -1 output stops (-ENOSPC) when buf
 * is full, one byte being kept for a NUL. */
void curfew__jw_init(curfew__jw *w, int fd, char *buf, size_t cap);
/* Flushes to the descriptor (or NUL-terminates the buffer). Returns the
 * first error or 0. */
int curfew__jw_finish(curfew__jw *w);

void curfew__jw_obj(curfew__jw *w);
void curfew__jw_obj_end(curfew__jw *w);
void curfew__jw_arr(curfew__jw *w);
void curfew__jw_arr_end(curfew__jw *w);
void curfew__jw_key(curfew__jw *w, const char *key);
/* Any bytes: escaped, invalid UTF-8 replaced by U+FFFD (R4). NULL writes
 * null. */
void curfew__jw_str(curfew__jw *w, const char *s);
void curfew__jw_strn(curfew__jw *w, const char *s, size_t n);
void curfew__jw_int(curfew__jw *w, int64_t v);
void curfew__jw_bool(curfew__jw *w, int v);
void curfew__jw_null(curfew__jw *w);
/* Raw bytes, for newlines between documents; no separator logic. */
void curfew__jw_raw(curfew__jw *w, const char *s, size_t n);

/* A value that is already JSON text (checked by whoever made it). */
void curfew__jw_json(curfew__jw *w, const char *json, size_t n);

/* Key and value in one call. */
void curfew__jw_kstr(curfew__jw *w, const char *key, const char *v);
void curfew__jw_kint(curfew__jw *w, const char *key, int64_t v);

/* Formats v in decimal into out (at least 21 bytes); returns the length.
 * Async-signal-safe. */
size_t curfew__fmt_int(char *out, int64_t v);

#endif
