/* A small strict JSON reader (RFC 8259) for curfew's own documents: the
 * shutdown record read back at the next start (curfew_record_read_previous)
 * and the curfew-report tool. It builds a tree; it is never used on the
 * watchdog's path, so it may allocate.
 *
 * SPDX-License-Identifier: MIT
 *
 * Input from files is untrusted: any byte sequence gives either a tree or
 * -EPROTO with a message naming the line and column, never a crash, and
 * never unbounded recursion (nesting deeper than CURFEW__JSON_MAXDEPTH is
 * refused).
 */
#ifndef CURFEW_REPORT_JSONR_H
#define CURFEW_REPORT_JSONR_H

#include <stddef.h>
#include <stdint.h>

#define CURFEW__JSON_MAXDEPTH 64

typedef enum curfew__jtype {
    CURFEW__J_NULL = 0,
    CURFEW__J_BOOL,
    CURFEW__J_NUM,
    CURFEW__J_STR,
    CURFEW__J_ARR,
    CURFEW__J_OBJ
} curfew__jtype;

typedef struct curfew__jval curfew__jval;
struct curfew__jval {
    curfew__jtype type;
    int boolean;         /* J_BOOL */
    double num;          /* J_NUM */
    int is_int;          /* J_NUM: written without fraction or exponent and
                            fits in int64_t */
    int64_t i;           /* J_NUM when is_int */
    char *str;           /* J_STR: decoded UTF-8, NUL-terminated (may hold
                            NUL bytes from \u0000: use len) */
    size_t len;          /* J_STR: bytes in str */
    size_t n;            /* J_ARR, J_OBJ: number of items */
    curfew__jval *items; /* J_ARR, J_OBJ: n values */
    char **keys;         /* J_OBJ: n keys (decoded, NUL-terminated) */
};

/* Parses len bytes of text (need not be NUL-terminated): one JSON value,
 * optionally surrounded by whitespace. Returns 0 and *out, -EPROTO with a
 * message in err ("line 3, column 14: expected ',' or '}'"; err may be NULL
 * when errsize is 0), or -ENOMEM. */
int curfew__json_parse(const char *text, size_t len, curfew__jval **out,
                       char *err, size_t errsize);
void curfew__json_free(curfew__jval *v);

/* The value of key in an object; NULL if v is not an object or has no such
 * key (the first one wins when a key repeats). */
const curfew__jval *curfew__json_get(const curfew__jval *v, const char *key);
/* Typed helpers: the string (NULL unless J_STR), the integer (dflt unless
 * an integral J_NUM). */
const char *curfew__json_str(const curfew__jval *v);
int64_t curfew__json_int(const curfew__jval *v, int64_t dflt);

#endif
