/* A strict JSON reader (RFC 8259) for curfew's own documents.
 *
 * SPDX-License-Identifier: MIT
 *
 * The parser is iterative. Open arrays and objects live on a fixed stack of
 * CURFEW__JSON_MAXDEPTH frames inside the parser, so hostile nesting costs
 * neither C stack nor memory beyond that bound. Each frame owns the
 * container it fills; a finished value is moved by value into its parent.
 * So at any moment everything allocated so far is reachable from the frames
 * (or from the one value in hand), and a single sweep frees it on error.
 *
 * Limits, as RFC 8259 section 9 allows: nesting deeper than
 * CURFEW__JSON_MAXDEPTH; numbers too large for a double; U+0000 inside
 * object keys (keys are plain C strings, and "a\u0000b" would silently
 * match "a"); a leading byte order mark. Columns in messages count
 * characters (UTF-8 sequences) from 1, as editors do.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "jsonr.h"

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define JR_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define JR_PRINTF(f, a)
#endif

typedef struct jr_frame {
    curfew__jval v; /* the array or object being filled */
    size_t cap;     /* room in v.items (and v.keys) */
    char *key;      /* object: the key of the member being read */
} jr_frame;

typedef struct jr_parser {
    const unsigned char *s;
    size_t len, pos;
    char *err;
    size_t errsize;
    int depth;
    jr_frame stack[CURFEW__JSON_MAXDEPTH];
} jr_parser;

static void jr_where(const jr_parser *p, size_t at, unsigned long *line,
                     unsigned long *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at && i < p->len; i++) {
        if (p->s[i] == '\n') {
            ++*line;
            *col = 1;
        } else if ((p->s[i] & 0xC0) != 0x80) {
            ++*col;
        }
    }
}

/* Every refusal goes through here, so every -EPROTO carries a position. */
static int jr_fail(jr_parser *p, size_t at, const char *fmt, ...)
    JR_PRINTF(3, 4);
static int jr_fail(jr_parser *p, size_t at, const char *fmt, ...)
{
    if (!p->err || p->errsize == 0)
        return -EPROTO;
    unsigned long line, col;
    jr_where(p, at, &line, &col);
    int n = snprintf(p->err, p->errsize, "line %lu, column %lu: ", line, col);
    if (n >= 0 && (size_t)n < p->errsize) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errsize - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -EPROTO;
}

/* "expected X, found Y", with Y shown so that the message stays ASCII
 * whatever the input holds. */
static int jr_expected(jr_parser *p, const char *what)
{
    if (p->pos >= p->len)
        return jr_fail(p, p->pos, "unexpected end of input, expected %s", what);
    unsigned c = p->s[p->pos];
    if (c > 0x20 && c < 0x7F)
        return jr_fail(p, p->pos, "expected %s, found '%c'", what, (int)c);
    return jr_fail(p, p->pos, "expected %s, found byte 0x%02x", what, c);
}

static int jr_nomem(jr_parser *p)
{
    if (p->err && p->errsize)
        snprintf(p->err, p->errsize, "out of memory");
    return -ENOMEM;
}

static void jr_skip_ws(jr_parser *p)
{
    while (p->pos < p->len) {
        unsigned c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        p->pos++;
    }
}

static int jr_is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static int jr_hex(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F')
        return (int)(c - 'A' + 10);
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s (n bytes available), or 0.
 * The second-byte ranges are those of Unicode's table 3-7: they exclude
 * overlong forms, UTF-16 surrogates and code points above U+10FFFF. */
static size_t jr_utf8(const unsigned char *s, size_t n)
{
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    return len;
}

static size_t jr_put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The four hex digits of a \u escape whose backslash is at i, or -1. */
static long jr_u_escape(const jr_parser *p, size_t i, size_t end)
{
    if (end - i < 6 || p->s[i + 1] != 'u')
        return -1;
    long v = 0;
    for (size_t k = 2; k < 6; k++) {
        int h = jr_hex(p->s[i + k]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

/* Decodes the string whose opening quote is at p->pos. */
static int jr_string(jr_parser *p, char **out, size_t *outlen)
{
    const unsigned char *s = p->s;
    size_t open = p->pos, i = open + 1, end = i;

    /* Find the closing quote first: no escape makes its text longer, so
     * the raw length bounds the decoded one and one allocation suffices. */
    while (end < p->len && s[end] != '"')
        end += s[end] == '\\' ? 2 : 1;
    if (end > p->len)
        end = p->len;
    char *buf = malloc(end - i + 1);
    if (!buf)
        return jr_nomem(p);

    size_t n = 0;
    int r;
    while (i < end) {
        unsigned c = s[i];
        if (c == '\\') {
            if (end - i < 2)
                break; /* a backslash as the last byte of the input */
            static const char names[] = "\"\\/bfnrt";
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            unsigned e = s[i + 1];
            const char *simple = e ? strchr(names, (int)e) : NULL;
            if (simple) {
                buf[n++] = decoded[simple - names];
                i += 2;
                continue;
            }
            if (e != 'u') {
                if (e > 0x20 && e < 0x7F)
                    r = jr_fail(p, i, "invalid escape '\\%c' in a string",
                                (int)e);
                else
                    r = jr_fail(p, i, "invalid escape: byte 0x%02x after '\\'",
                                e);
                goto bad;
            }
            long cp = jr_u_escape(p, i, end);
            if (cp < 0) {
                r = jr_fail(p, i, "invalid \\u escape: four hex digits needed");
                goto bad;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                r = jr_fail(p, i,
                            "lone surrogate \\u%04lX: a low surrogate "
                            "without a high one before it",
                            (unsigned long)cp);
                goto bad;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                long lo = jr_u_escape(p, i + 6, end);
                if (end - i < 12 || s[i + 6] != '\\' || lo < 0xDC00 ||
                    lo > 0xDFFF) {
                    r = jr_fail(p, i,
                                "lone surrogate \\u%04lX: a high surrogate "
                                "must be followed by a low one",
                                (unsigned long)cp);
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            n += jr_put_utf8(buf + n, (uint32_t)cp);
            i += 6;
            continue;
        }
        if (c < 0x20) {
            r = jr_fail(p, i,
                        "control character 0x%02x in a string (it must be "
                        "escaped)",
                        c);
            goto bad;
        }
        size_t l = jr_utf8(s + i, end - i);
        if (l == 0) {
            r = jr_fail(p, i, "invalid UTF-8 in a string (byte 0x%02x)", c);
            goto bad;
        }
        memcpy(buf + n, s + i, l);
        n += l;
        i += l;
    }
    if (end >= p->len) {
        unsigned long line, col;
        jr_where(p, open, &line, &col);
        r = jr_fail(p, p->len,
                    "unexpected end of input in the string that starts at "
                    "line %lu, column %lu",
                    line, col);
        goto bad;
    }
    buf[n] = '\0';
    p->pos = end + 1;
    *out = buf;
    *outlen = n;
    return 0;
bad:
    free(buf);
    return r;
}

/* strtod() reads the decimal point of the current locale; JSON's is always
 * '.'. One "C" locale object, made once and shared, is switched to for the
 * call on this thread only (uselocale), which setlocale() elsewhere cannot
 * disturb. */
static _Atomic(locale_t) jr_c_locale;

static locale_t jr_locale(void)
{
    locale_t l = atomic_load(&jr_c_locale);
    if (l)
        return l;
    l = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (!l)
        return (locale_t)0;
    locale_t none = (locale_t)0;
    if (!atomic_compare_exchange_strong(&jr_c_locale, &none, l)) {
        freelocale(l);
        l = none;
    }
    return l;
}

static int jr_double(jr_parser *p, size_t start, size_t end, curfew__jval *v)
{
    char small[64];
    size_t n = end - start;
    char *text = n < sizeof(small) ? small : malloc(n + 1);
    if (!text)
        return jr_nomem(p);
    memcpy(text, p->s + start, n);
    text[n] = '\0';
    locale_t c = jr_locale();
    int r = 0;
    if (!c) {
        r = jr_nomem(p);
    } else {
        locale_t old = uselocale(c);
        char *stop;
        double d = strtod(text, &stop);
        uselocale(old);
        if (stop != text + n)
            r = jr_fail(p, start, "invalid number");
        else if (d > DBL_MAX || d < -DBL_MAX)
            r = jr_fail(p, start, "number out of range");
        v->num = d;
    }
    if (text != small)
        free(text);
    return r;
}

static int jr_number(jr_parser *p, curfew__jval *v)
{
    const unsigned char *s = p->s;
    size_t start = p->pos, i = start;
    int neg = 0, integral = 1;
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= p->len || !jr_is_digit(s[i]))
        return jr_fail(p, i, "expected a digit after '-'");
    if (s[i] == '0') {
        i++;
        if (i < p->len && jr_is_digit(s[i]))
            return jr_fail(p, i - 1, "leading zeros are not allowed");
    } else {
        while (i < p->len && jr_is_digit(s[i]))
            i++;
    }
    if (i < p->len && s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || !jr_is_digit(s[i]))
            return jr_fail(p, i, "expected a digit after the decimal point");
        while (i < p->len && jr_is_digit(s[i]))
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-'))
            i++;
        if (i >= p->len || !jr_is_digit(s[i]))
            return jr_fail(p, i, "expected a digit in the exponent");
        while (i < p->len && jr_is_digit(s[i]))
            i++;
    }
    v->type = CURFEW__J_NUM;
    p->pos = i;
    if (integral) {
        /* Exact integers need no strtod(): accumulate on the sign's side so
         * that INT64_MIN is reachable. */
        int64_t acc = 0;
        size_t k;
        for (k = start + (size_t)neg; k < i; k++) {
            int d = s[k] - '0';
            if (neg) {
                if (acc < (INT64_MIN + d) / 10)
                    break;
                acc = acc * 10 - d;
            } else {
                if (acc > (INT64_MAX - d) / 10)
                    break;
                acc = acc * 10 + d;
            }
        }
        if (k == i) {
            v->is_int = 1;
            v->i = acc;
            v->num = neg && acc == 0 ? -0.0 : (double)acc;
            return 0;
        }
    }
    return jr_double(p, start, i, v);
}

static int jr_literal(jr_parser *p, curfew__jval *v)
{
    const char *word;
    switch (p->s[p->pos]) {
    case 't':
        word = "true";
        v->type = CURFEW__J_BOOL;
        v->boolean = 1;
        break;
    case 'f':
        word = "false";
        v->type = CURFEW__J_BOOL;
        break;
    default:
        word = "null";
        v->type = CURFEW__J_NULL;
        break;
    }
    size_t n = strlen(word);
    for (size_t k = 0; k < n; k++) {
        if (p->pos + k >= p->len)
            return jr_fail(p, p->len, "unexpected end of input in '%s'", word);
        if (p->s[p->pos + k] != (unsigned char)word[k])
            return jr_fail(p, p->pos, "invalid literal (expected '%s')", word);
    }
    p->pos += n;
    return 0;
}

static void jr_free_contents(curfew__jval *v)
{
    switch (v->type) {
    case CURFEW__J_STR:
        free(v->str);
        break;
    case CURFEW__J_OBJ:
        for (size_t k = 0; k < v->n; k++)
            free(v->keys[k]);
        free(v->keys);
        /* fall through */
    case CURFEW__J_ARR:
        /* Recursion is bounded: no tree is deeper than MAXDEPTH. */
        for (size_t k = 0; k < v->n; k++)
            jr_free_contents(&v->items[k]);
        free(v->items);
        break;
    default:
        break;
    }
}

/* Moves *v (and, in an object, the pending key) into f's container. On
 * failure *v is freed, so the caller owns nothing either way. */
static int jr_append(jr_parser *p, jr_frame *f, curfew__jval *v)
{
    curfew__jval *c = &f->v;
    if (c->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        if (cap > SIZE_MAX / sizeof(curfew__jval))
            goto nomem;
        curfew__jval *items = realloc(c->items, cap * sizeof(*items));
        if (!items)
            goto nomem;
        c->items = items;
        if (c->type == CURFEW__J_OBJ) {
            char **keys = realloc(c->keys, cap * sizeof(*keys));
            if (!keys)
                goto nomem;
            c->keys = keys;
        }
        f->cap = cap;
    }
    if (c->type == CURFEW__J_OBJ) {
        c->keys[c->n] = f->key;
        f->key = NULL;
    }
    c->items[c->n++] = *v;
    return 0;
nomem:
    jr_free_contents(v);
    return jr_nomem(p);
}

/* Reads `"key" :` into f->key. after_comma only changes the message. */
static int jr_key(jr_parser *p, jr_frame *f, int after_comma)
{
    jr_skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != '"')
        return jr_expected(p, after_comma ? "a string key"
                                          : "a string key or '}'");
    size_t at = p->pos, n;
    int r = jr_string(p, &f->key, &n);
    if (r)
        return r;
    if (memchr(f->key, '\0', n))
        return jr_fail(p, at, "\\u0000 is not allowed in an object key");
    jr_skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':')
        return jr_expected(p, "':' after the key");
    p->pos++;
    return 0;
}

int curfew__json_parse(const char *text, size_t len, curfew__jval **out,
                       char *err, size_t errsize)
{
    if (!out || (!text && len) || (!err && errsize))
        return -EINVAL;
    *out = NULL;
    if (errsize)
        err[0] = '\0';

    /* The stack of frames is large; it lives on the heap so that callers
     * with small thread stacks are not surprised. */
    jr_parser *p = malloc(sizeof(*p));
    if (!p) {
        if (errsize)
            snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    p->s = (const unsigned char *)text;
    p->len = len;
    p->pos = 0;
    p->err = err;
    p->errsize = errsize;
    p->depth = 0;

    curfew__jval v;
    int r;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        r = jr_fail(p, 0, "a byte order mark is not allowed");
        goto bad;
    }
    for (;;) {
        /* One value starts here. */
        jr_skip_ws(p);
        memset(&v, 0, sizeof(v));
        unsigned c = p->pos < len ? p->s[p->pos] : 0;
        if (p->pos >= len) {
            r = jr_expected(p, "a value");
            goto bad;
        } else if (c == '[' || c == '{') {
            if (p->depth == CURFEW__JSON_MAXDEPTH) {
                r = jr_fail(p, p->pos, "nesting deeper than %d levels",
                            CURFEW__JSON_MAXDEPTH);
                goto bad;
            }
            jr_frame *f = &p->stack[p->depth++];
            memset(f, 0, sizeof(*f));
            f->v.type = c == '[' ? CURFEW__J_ARR : CURFEW__J_OBJ;
            p->pos++;
            jr_skip_ws(p);
            if (p->pos >= len || p->s[p->pos] != (c == '[' ? ']' : '}')) {
                if (c == '{' && (r = jr_key(p, f, 0)) != 0)
                    goto bad;
                continue; /* read the first member */
            }
            p->pos++;
            v = f->v;
            p->depth--;
        } else if (c == '"') {
            v.type = CURFEW__J_STR;
            if ((r = jr_string(p, &v.str, &v.len)) != 0)
                goto bad;
        } else if (c == '-' || jr_is_digit(c)) {
            if ((r = jr_number(p, &v)) != 0)
                goto bad;
        } else if (c == 't' || c == 'f' || c == 'n') {
            if ((r = jr_literal(p, &v)) != 0)
                goto bad;
        } else {
            r = jr_expected(p, "a value");
            goto bad;
        }

        /* v is complete: hand it to its container, and close every
         * container that ends right after it. */
        for (;;) {
            if (p->depth == 0)
                goto done;
            jr_frame *f = &p->stack[p->depth - 1];
            if ((r = jr_append(p, f, &v)) != 0)
                goto bad;
            jr_skip_ws(p);
            int obj = f->v.type == CURFEW__J_OBJ;
            unsigned close = obj ? '}' : ']';
            if (p->pos < len && p->s[p->pos] == ',') {
                size_t comma = p->pos++;
                jr_skip_ws(p);
                if (p->pos < len && p->s[p->pos] == close) {
                    r = jr_fail(p, comma, "trailing comma before '%c'",
                                (int)close);
                    goto bad;
                }
                if (obj && (r = jr_key(p, f, 1)) != 0)
                    goto bad;
                break; /* read the next member */
            }
            if (p->pos < len && p->s[p->pos] == close) {
                p->pos++;
                v = f->v;
                p->depth--;
                continue;
            }
            r = jr_expected(p, obj ? "',' or '}'" : "',' or ']'");
            goto bad;
        }
    }
done:
    jr_skip_ws(p);
    if (p->pos < len) {
        r = jr_fail(p, p->pos, "unexpected data after the value");
        jr_free_contents(&v);
        goto bad;
    }
    curfew__jval *root = malloc(sizeof(*root));
    if (!root) {
        jr_free_contents(&v);
        r = jr_nomem(p);
        goto bad;
    }
    *root = v;
    *out = root;
    free(p);
    return 0;
bad:
    while (p->depth > 0) {
        jr_frame *f = &p->stack[--p->depth];
        jr_free_contents(&f->v);
        free(f->key);
    }
    free(p);
    return r;
}

void curfew__json_free(curfew__jval *v)
{
    if (!v)
        return;
    jr_free_contents(v);
    free(v);
}

const curfew__jval *curfew__json_get(const curfew__jval *v, const char *key)
{
    if (!v || !key || v->type != CURFEW__J_OBJ)
        return NULL;
    for (size_t k = 0; k < v->n; k++)
        if (strcmp(v->keys[k], key) == 0)
            return &v->items[k];
    return NULL;
}

const char *curfew__json_str(const curfew__jval *v)
{
    return v && v->type == CURFEW__J_STR ? v->str : NULL;
}

int64_t curfew__json_int(const curfew__jval *v, int64_t dflt)
{
    if (!v || v->type != CURFEW__J_NUM)
        return dflt;
    if (v->is_int)
        return v->i;
    /* 1e3 is integral too; the bounds are exact powers of two, and a
     * double inside them converts without undefined behaviour. */
    if (v->num >= -9223372036854775808.0 && v->num < 9223372036854775808.0 &&
        (double)(int64_t)v->num == v->num)
        return (int64_t)v->num;
    return dflt;
}
