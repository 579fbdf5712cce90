/* SPDX-License-Identifier: MIT */
#include "jsonw.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void curfew__jw_init(curfew__jw *w, int fd, char *buf, size_t cap)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->buf = buf;
    w->cap = cap;
    if (cap == 0)
        w->err = -EINVAL;
}

static void flush(curfew__jw *w)
{
    size_t off = 0;
    while (off < w->len && !w->err) {
        ssize_t n = write(w->fd, w->buf + off, w->len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            w->err = -errno;
        } else {
            off += (size_t)n;
        }
    }
    w->len = 0;
}

void curfew__jw_raw(curfew__jw *w, const char *s, size_t n)
{
    while (n && !w->err) {
        size_t room = w->cap - w->len - (w->fd < 0 ? 1 : 0);
        if (room == 0) {
            if (w->fd < 0) {
                w->err = -ENOSPC;
                return;
            }
            flush(w);
            continue;
        }
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        w->total += k;
        s += k;
        n -= k;
    }
}

int curfew__jw_finish(curfew__jw *w)
{
    if (w->fd >= 0)
        flush(w);
    else if (w->cap)
        w->buf[w->len] = '\0';
    return w->err;
}

/* Comma before every element but the first of its container. */
static void sep(curfew__jw *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0 && w->depth <= CURFEW__JW_MAXDEPTH) {
        if (w->count[w->depth - 1])
            curfew__jw_raw(w, ",", 1);
        w->count[w->depth - 1] = 1;
    }
}

static void open_(curfew__jw *w, char c)
{
    sep(w);
    curfew__jw_raw(w, &c, 1);
    if (w->depth >= CURFEW__JW_MAXDEPTH) {
        w->err = w->err ? w->err : -E2BIG;
        return;
    }
    w->count[w->depth++] = 0;
}

static void close_(curfew__jw *w, char c)
{
    if (w->depth > 0)
        w->depth--;
    curfew__jw_raw(w, &c, 1);
}

void curfew__jw_obj(curfew__jw *w)
{
    open_(w, '{');
}

void curfew__jw_obj_end(curfew__jw *w)
{
    close_(w, '}');
}

void curfew__jw_arr(curfew__jw *w)
{
    open_(w, '[');
}

void curfew__jw_arr_end(curfew__jw *w)
{
    close_(w, ']');
}

static const char hex[] = "0123456789abcdef";

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

void curfew__jw_strn(curfew__jw *w, const char *str, size_t n)
{
    sep(w);
    const unsigned char *s = (const unsigned char *)str;
    curfew__jw_raw(w, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        const char *esc = NULL;
        char u[6];
        size_t elen = 2;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7F) {
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            esc = u;
            elen = 6;
        }
        if (esc) {
            curfew__jw_raw(w, (const char *)s + i - run, run);
            run = 0;
            curfew__jw_raw(w, esc, elen);
            i++;
            continue;
        }
        size_t l = utf8_len(s + i, n - i);
        if (l == 0) {
            curfew__jw_raw(w, (const char *)s + i - run, run);
            run = 0;
            curfew__jw_raw(w, "\\ufffd", 6);
            i++;
            continue;
        }
        run += l;
        i += l;
    }
    curfew__jw_raw(w, (const char *)s + n - run, run);
    curfew__jw_raw(w, "\"", 1);
}

void curfew__jw_str(curfew__jw *w, const char *s)
{
    if (!s)
        curfew__jw_null(w);
    else
        curfew__jw_strn(w, s, strlen(s));
}

void curfew__jw_key(curfew__jw *w, const char *key)
{
    curfew__jw_str(w, key);
    curfew__jw_raw(w, ":", 1);
    w->after_key = 1;
}

size_t curfew__fmt_int(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

void curfew__jw_int(curfew__jw *w, int64_t v)
{
    char b[24];
    sep(w);
    curfew__jw_raw(w, b, curfew__fmt_int(b, v));
}

void curfew__jw_bool(curfew__jw *w, int v)
{
    sep(w);
    curfew__jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

void curfew__jw_null(curfew__jw *w)
{
    sep(w);
    curfew__jw_raw(w, "null", 4);
}

void curfew__jw_json(curfew__jw *w, const char *json, size_t n)
{
    sep(w);
    curfew__jw_raw(w, json, n);
}

void curfew__jw_kstr(curfew__jw *w, const char *key, const char *v)
{
    curfew__jw_key(w, key);
    curfew__jw_str(w, v);
}

void curfew__jw_kint(curfew__jw *w, const char *key, int64_t v)
{
    curfew__jw_key(w, key);
    curfew__jw_int(w, v);
}
