/* libFuzzer target for the strict JSON reader (src/report/jsonr.c), which
 * reads records back (R2) and feeds curfew-report (R3).
 *
 * Any input must give a tree or -EPROTO with a positioned message. A tree
 * must hold together: strings NUL-terminated at their length and valid
 * UTF-8, keys present and free of NUL, numbers finite, integers equal to
 * their double, depth within CURFEW__JSON_MAXDEPTH, and curfew__json_get
 * returning the first member of each key. The tree is then written back as
 * JSON by a small writer here and parsed again: the two trees must be
 * equal, so what the parser accepts it reads the same way twice.
 *
 * SPDX-License-Identifier: MIT
 */
#include "report/jsonr.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...)                                                   \
    do {                                                            \
        fprintf(stderr, "fuzz_jsonr: %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                               \
        fputc('\n', stderr);                                        \
        abort();                                                    \
    } while (0)

/* Well-formed UTF-8 (Unicode table 3-7), checked independently of the
 * parser's own decoder. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < len)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static void walk(const curfew__jval *v, int depth)
{
    if (depth > CURFEW__JSON_MAXDEPTH)
        FAIL("tree deeper than %d", CURFEW__JSON_MAXDEPTH);
    switch (v->type) {
    case CURFEW__J_NULL:
        break;
    case CURFEW__J_BOOL:
        if (v->boolean != 0 && v->boolean != 1)
            FAIL("boolean %d", v->boolean);
        break;
    case CURFEW__J_NUM:
        if (!(v->num >= -DBL_MAX && v->num <= DBL_MAX))
            FAIL("number not finite");
        if (v->is_int && (double)v->i != v->num)
            FAIL("integer %" PRId64 " != %.17g", v->i, v->num);
        if (v->is_int && curfew__json_int(v, 0) != v->i)
            FAIL("curfew__json_int disagrees");
        break;
    case CURFEW__J_STR:
        if (!v->str || v->str[v->len] != '\0')
            FAIL("string not terminated at its length");
        if (!utf8_valid((const unsigned char *)v->str, v->len))
            FAIL("string not valid UTF-8");
        if (curfew__json_str(v) != v->str)
            FAIL("curfew__json_str disagrees");
        break;
    case CURFEW__J_OBJ:
        if (v->n && !v->keys)
            FAIL("object without keys");
        for (size_t k = 0; k < v->n; k++) {
            if (!v->keys[k])
                FAIL("NULL key");
            if (!utf8_valid((const unsigned char *)v->keys[k],
                            strlen(v->keys[k])))
                FAIL("key not valid UTF-8");
        }
        /* The first member of each key wins; quadratic, so only for
         * objects of modest size. */
        for (size_t k = 0; k < v->n && v->n <= 512; k++) {
            size_t first = 0;
            while (strcmp(v->keys[first], v->keys[k]) != 0)
                first++;
            if (curfew__json_get(v, v->keys[k]) != &v->items[first])
                FAIL("curfew__json_get did not return the first member");
        }
        /* fall through */
    case CURFEW__J_ARR:
        if (v->n && !v->items)
            FAIL("container without items");
        for (size_t k = 0; k < v->n; k++)
            walk(&v->items[k], depth + 1);
        break;
    default:
        FAIL("unknown type %d", (int)v->type);
    }
}

/* ---- writing the tree back ---------------------------------------------- */

typedef struct out {
    char *buf;
    size_t len, cap;
    int oom;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->oom)
        return;
    if (o->cap - o->len < n) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap - o->len < n)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = 1;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void put_str(out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, 6);
        } else {
            put(o, (const char *)&s[i], 1);
        }
    }
    put(o, "\"", 1);
}

static void emit(out *o, const curfew__jval *v)
{
    char num[40];
    switch (v->type) {
    case CURFEW__J_NULL:
        put(o, "null", 4);
        break;
    case CURFEW__J_BOOL:
        put(o, v->boolean ? "true" : "false", v->boolean ? 4 : 5);
        break;
    case CURFEW__J_NUM:
        if (v->is_int)
            snprintf(num, sizeof(num), "%" PRId64, v->i);
        else
            snprintf(num, sizeof(num), "%.17g", v->num);
        put(o, num, strlen(num));
        break;
    case CURFEW__J_STR:
        put_str(o, v->str, v->len);
        break;
    case CURFEW__J_ARR:
    case CURFEW__J_OBJ: {
        int obj = v->type == CURFEW__J_OBJ;
        put(o, obj ? "{" : "[", 1);
        for (size_t k = 0; k < v->n; k++) {
            if (k)
                put(o, ",", 1);
            if (obj) {
                put_str(o, v->keys[k], strlen(v->keys[k]));
                put(o, ":", 1);
            }
            emit(o, &v->items[k]);
        }
        put(o, obj ? "}" : "]", 1);
        break;
    }
    }
}

static void same(const curfew__jval *a, const curfew__jval *b)
{
    if (a->type != b->type)
        FAIL("round trip changed a type: %d -> %d", (int)a->type, (int)b->type);
    switch (a->type) {
    case CURFEW__J_BOOL:
        if (a->boolean != b->boolean)
            FAIL("round trip changed a boolean");
        break;
    case CURFEW__J_NUM:
        /* %.17g gives the double back exactly; "1e2" may come back as the
         * integer 100, never the other way round. */
        if (a->num != b->num)
            FAIL("round trip changed %.17g to %.17g", a->num, b->num);
        if (a->is_int && (!b->is_int || a->i != b->i))
            FAIL("round trip changed the integer %" PRId64, a->i);
        break;
    case CURFEW__J_STR:
        if (a->len != b->len || memcmp(a->str, b->str, a->len) != 0)
            FAIL("round trip changed a string");
        break;
    case CURFEW__J_OBJ:
    case CURFEW__J_ARR:
        if (a->n != b->n)
            FAIL("round trip changed a size");
        for (size_t k = 0; k < a->n; k++) {
            if (a->type == CURFEW__J_OBJ && strcmp(a->keys[k], b->keys[k]))
                FAIL("round trip changed a key");
            same(&a->items[k], &b->items[k]);
        }
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: reading past len must be caught, whatever
     * libFuzzer's own buffer allows. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    curfew__jval *v = NULL;
    char err[256];
    int r = curfew__json_parse(text, size, &v, err, sizeof(err));
    free(text);
    if (r == -ENOMEM)
        return 0;
    if (r == -EPROTO) {
        if (v)
            FAIL("tree left behind a refusal");
        if (strncmp(err, "line ", 5) != 0 || !strstr(err, ", column "))
            FAIL("message without a position: %s", err);
        return 0;
    }
    if (r != 0 || !v)
        FAIL("unexpected result %d", r);
    if (err[0])
        FAIL("message left after success: %s", err);
    walk(v, 0);

    out o = {0};
    emit(&o, v);
    if (!o.oom) {
        curfew__jval *w = NULL;
        r = curfew__json_parse(o.buf, o.len, &w, err, sizeof(err));
        if (r == 0) {
            same(v, w);
            curfew__json_free(w);
        } else if (r != -ENOMEM) {
            FAIL("the tree written back was refused: %s", err);
        }
    }
    free(o.buf);
    curfew__json_free(v);
    return 0;
}
