/* libFuzzer target for the JSON writer's strings (CONTRACT.md R4, W4).
 *
 * The input is cut into up to 8 byte strings (a length byte, then that many
 * bytes; the last one takes the rest). They are written as keys, string
 * values and integers into one object, to a buffer (fd -1); the output must
 * parse with curfew__json_parse, and every decoded string must be the input
 * with each byte that does not start a well-formed UTF-8 sequence replaced by
 * U+FFFD, so a string that was valid UTF-8 comes back byte for byte. The
 * same document is then written into buffers too small for it (the writer
 * reports -ENOSPC and stays inside them) and through a descriptor with a
 * small staging buffer (same bytes as the buffer path).
 *
 * SPDX-License-Identifier: MIT
 */
#include "report/jsonr.h"
#include "report/jsonw.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXPIECES 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct piece {
    const uint8_t *p;
    size_t n;
    char *key;   /* NUL-terminated copy: keys end at the first NUL */
    int64_t num; /* first 8 bytes, zero-padded */
};

#define FAIL(...)                                                   \
    do {                                                            \
        fprintf(stderr, "fuzz_jsonw: %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                               \
        fputc('\n', stderr);                                        \
        abort();                                                    \
    } while (0)

/* ---- the expected decoding, independent of the writer ----------------- */

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7), 0 if
 * s[0] does not start one within n bytes. */
static size_t wf_len(const uint8_t *s, size_t n)
{
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b == 0xE0) {
        len = 3;
        lo = 0xA0;
    } else if (b == 0xED) {
        len = 3;
        hi = 0x9F;
    } else if (b >= 0xE1 && b <= 0xEF) {
        len = 3;
    } else if (b == 0xF0) {
        len = 4;
        lo = 0x90;
    } else if (b == 0xF4) {
        len = 4;
        hi = 0x8F;
    } else if (b >= 0xF1 && b <= 0xF3) {
        len = 4;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0, l; i < n; i += l)
        if ((l = wf_len(s + i, n - i)) == 0)
            return 0;
    return 1;
}

/* What the reader must give back for s: out needs 3 * n bytes. */
static size_t expected(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = wf_len(s + i, n - i);
        if (l == 0) {
            out[o++] = 0xEF;
            out[o++] = 0xBF;
            out[o++] = 0xBD;
            i++;
        } else {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        }
    }
    return o;
}

static void check_str(const char *what, const uint8_t *in, size_t n,
                      const char *got, size_t got_len)
{
    static uint8_t *want;
    static size_t want_cap;
    if (want_cap < 3 * n + 1) {
        free(want);
        want_cap = 3 * n + 1;
        want = malloc(want_cap);
        if (!want)
            abort();
    }
    if (!got)
        FAIL("%s: not a string", what);
    if (!valid_utf8((const uint8_t *)got, got_len))
        FAIL("%s: decoded string is not valid UTF-8", what);
    if (valid_utf8(in, n)) {
        /* Nothing to replace: byte for byte. */
        if (got_len != n || memcmp(got, in, n) != 0)
            FAIL("%s: valid UTF-8 of %zu bytes came back as %zu other bytes",
                 what, n, got_len);
        return;
    }
    size_t wl = expected(in, n, want);
    if (got_len != wl || memcmp(got, want, wl) != 0)
        FAIL("%s: %zu bytes decoded, %zu expected (or different bytes)", what,
             got_len, wl);
}

/* ---- the document ------------------------------------------------------- */

/* { "<key i>": "<piece i+1>" ..., "ints": [n0, "p0", n1, "p1", ...],
 *   "deep": {"d": [[{"k": "<last piece>"}]]}, "null": null, "bool": true,
 *   "num": n0, "kstr": "<last key>" } */
static void write_doc(curfew__jw *w, const struct piece *pc, size_t np)
{
    curfew__jw_obj(w);
    for (size_t i = 0; i < np; i++) {
        const struct piece *v = &pc[(i + 1) % np];
        curfew__jw_key(w, pc[i].key);
        curfew__jw_strn(w, (const char *)v->p, v->n);
    }
    curfew__jw_key(w, "ints");
    curfew__jw_arr(w);
    for (size_t i = 0; i < np; i++) {
        curfew__jw_int(w, pc[i].num);
        curfew__jw_strn(w, (const char *)pc[i].p, pc[i].n);
    }
    curfew__jw_arr_end(w);
    curfew__jw_key(w, "deep");
    curfew__jw_obj(w);
    curfew__jw_key(w, "d");
    curfew__jw_arr(w);
    curfew__jw_arr(w);
    curfew__jw_obj(w);
    if (np)
        curfew__jw_key(w, "k");
    if (np)
        curfew__jw_strn(w, (const char *)pc[np - 1].p, pc[np - 1].n);
    curfew__jw_obj_end(w);
    curfew__jw_arr_end(w);
    curfew__jw_arr_end(w);
    curfew__jw_obj_end(w);
    curfew__jw_key(w, "null");
    curfew__jw_null(w);
    curfew__jw_key(w, "bool");
    curfew__jw_bool(w, 1);
    curfew__jw_kint(w, "num", np ? pc[0].num : INT64_MIN);
    curfew__jw_kstr(w, "kstr", np ? pc[np - 1].key : NULL);
    curfew__jw_obj_end(w);
}

static const curfew__jval *member(const curfew__jval *o, size_t i,
                                  const char *key, curfew__jtype type)
{
    if (i >= o->n || strcmp(o->keys[i], key) != 0)
        FAIL("member %zu is not \"%s\"", i, key);
    if (o->items[i].type != type)
        FAIL("member \"%s\" has type %d, not %d", key, (int)o->items[i].type,
             (int)type);
    return &o->items[i];
}

static void check_doc(const curfew__jval *root, const struct piece *pc,
                      size_t np)
{
    if (root->type != CURFEW__J_OBJ || root->n != np + 6)
        FAIL("root: type %d with %zu members, want an object with %zu",
             (int)root->type, root->n, np + 6);
    for (size_t i = 0; i < np; i++) {
        const struct piece *v = &pc[(i + 1) % np];
        const char *k = root->keys[i];
        check_str("key", (const uint8_t *)pc[i].key, strlen(pc[i].key), k,
                  strlen(k));
        const curfew__jval *s = &root->items[i];
        check_str("value", v->p, v->n, s->type == CURFEW__J_STR ? s->str : NULL,
                  s->len);
    }
    const curfew__jval *a = member(root, np, "ints", CURFEW__J_ARR);
    if (a->n != 2 * np)
        FAIL("ints: %zu items, want %zu", a->n, 2 * np);
    for (size_t i = 0; i < np; i++) {
        const curfew__jval *x = &a->items[2 * i], *s = &a->items[2 * i + 1];
        if (x->type != CURFEW__J_NUM || !x->is_int || x->i != pc[i].num)
            FAIL("ints[%zu]: want %lld", 2 * i, (long long)pc[i].num);
        check_str("array item", pc[i].p, pc[i].n,
                  s->type == CURFEW__J_STR ? s->str : NULL, s->len);
    }
    const curfew__jval *d = member(root, np + 1, "deep", CURFEW__J_OBJ);
    d = member(d, 0, "d", CURFEW__J_ARR);
    if (d->n != 1 || d->items[0].type != CURFEW__J_ARR || d->items[0].n != 1 ||
        d->items[0].items[0].type != CURFEW__J_OBJ)
        FAIL("deep.d is not [[{...}]]");
    d = &d->items[0].items[0];
    if (d->n != (np ? 1u : 0u))
        FAIL("deep.d[0][0] has %zu members", d->n);
    if (np) {
        const curfew__jval *s = member(d, 0, "k", CURFEW__J_STR);
        check_str("nested value", pc[np - 1].p, pc[np - 1].n, s->str, s->len);
    }
    member(root, np + 2, "null", CURFEW__J_NULL);
    if (!member(root, np + 3, "bool", CURFEW__J_BOOL)->boolean)
        FAIL("bool: want true");
    const curfew__jval *x = member(root, np + 4, "num", CURFEW__J_NUM);
    if (!x->is_int || x->i != (np ? pc[0].num : INT64_MIN))
        FAIL("num: wrong value");
    if (np) {
        const curfew__jval *s = member(root, np + 5, "kstr", CURFEW__J_STR);
        const char *k = pc[np - 1].key;
        check_str("kstr", (const uint8_t *)k, strlen(k), s->str, s->len);
    } else {
        member(root, np + 5, "kstr", CURFEW__J_NULL);
    }
}

/* Arrays nested depth deep, each holding one string: the writer refuses
 * more than CURFEW__JW_MAXDEPTH levels with -E2BIG. */
static void check_nesting(int depth, const struct piece *pc, size_t np)
{
    char buf[4096];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    for (int i = 0; i < depth; i++) {
        curfew__jw_arr(&w);
        curfew__jw_strn(&w, np ? (const char *)pc[0].p : "",
                        np && pc[0].n < 16 ? pc[0].n : 0);
    }
    for (int i = 0; i < depth; i++)
        curfew__jw_arr_end(&w);
    int r = curfew__jw_finish(&w);
    if (depth > CURFEW__JW_MAXDEPTH) {
        if (r != -E2BIG)
            FAIL("nesting %d: finish gave %d, want -E2BIG", depth, r);
        return;
    }
    if (r != 0)
        FAIL("nesting %d: finish gave %d", depth, r);
    curfew__jval *v = NULL;
    char err[128];
    if (curfew__json_parse(buf, w.len, &v, err, sizeof(err)) != 0)
        FAIL("nesting %d: does not parse: %s\n%s", depth, err, buf);
    const curfew__jval *p = v;
    for (int i = 0; i < depth; i++) {
        if (p->type != CURFEW__J_ARR || p->n != (i + 1 < depth ? 2u : 1u))
            FAIL("nesting %d: level %d wrong", depth, i);
        p = i + 1 < depth ? &p->items[1] : NULL;
    }
    curfew__json_free(v);
}

/* The descriptor path: a file written through a small staging buffer
 * holds exactly the buffer path's bytes. */
static void check_fd(const struct piece *pc, size_t np, const char *full,
                     size_t full_len, size_t cap)
{
    static int fd = -1;
    if (fd < 0) {
        const char *dir = getenv("TMPDIR");
        char path[4096];
        snprintf(path, sizeof(path), "%s/fuzz_jsonw.XXXXXX",
                 dir && *dir ? dir : "/tmp");
        fd = mkstemp(path);
        if (fd < 0)
            FAIL("mkstemp %s: %s", path, strerror(errno));
        unlink(path);
    }
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        FAIL("truncating the scratch file: %s", strerror(errno));
    char *buf = malloc(cap);
    if (!buf)
        abort();
    curfew__jw w;
    curfew__jw_init(&w, fd, buf, cap);
    write_doc(&w, pc, np);
    int r = curfew__jw_finish(&w);
    free(buf);
    if (r != 0 || w.total != full_len)
        FAIL("fd path, buffer of %zu: finish %d, %zu bytes, want %zu", cap, r,
             w.total, full_len);
    char *back = malloc(full_len + 1);
    if (!back)
        abort();
    ssize_t n = pread(fd, back, full_len + 1, 0);
    if (n < 0 || (size_t)n != full_len || memcmp(back, full, full_len) != 0)
        FAIL("fd path, buffer of %zu: the file differs from the buffer path",
             cap);
    free(back);
}

/* A buffer of exactly cap bytes (ASan catches a byte past it). */
static void check_small(const struct piece *pc, size_t np, const char *full,
                        size_t full_len, size_t cap)
{
    char *buf = malloc(cap);
    if (!buf)
        abort();
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, cap);
    write_doc(&w, pc, np);
    int r = curfew__jw_finish(&w);
    int want = full_len + 1 > cap ? -ENOSPC : 0;
    if (r != want)
        FAIL("buffer of %zu for %zu bytes: finish gave %d, want %d", cap,
             full_len, r, want);
    if (w.len >= cap || buf[w.len] != '\0' || memcmp(buf, full, w.len) != 0)
        FAIL("buffer of %zu: output is not a NUL-terminated prefix", cap);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct piece pc[MAXPIECES];
    size_t np = 0;
    const uint8_t *d = data;
    size_t left = size;
    while (left && np < MAXPIECES) {
        size_t l = d[0];
        d++;
        left--;
        if (np == MAXPIECES - 1 || l > left)
            l = left;
        pc[np].p = d;
        pc[np].n = l;
        pc[np].key = malloc(l + 1);
        if (!pc[np].key)
            abort();
        memcpy(pc[np].key, d, l);
        pc[np].key[l] = '\0';
        uint64_t u = 0;
        memcpy(&u, d, l < 8 ? l : 8);
        pc[np].num = (int64_t)u;
        np++;
        d += l;
        left -= l;
    }

    /* Every input byte costs at most 6 output bytes, and is written at
     * most three times. */
    size_t cap = 4096 + 18 * size;
    char *full = malloc(cap);
    if (!full)
        abort();
    curfew__jw w;
    curfew__jw_init(&w, -1, full, cap);
    write_doc(&w, pc, np);
    int r = curfew__jw_finish(&w);
    if (r != 0)
        FAIL("writing to a buffer of %zu: %d", cap, r);
    size_t full_len = w.len;
    if (w.total != full_len || full[full_len] != '\0')
        FAIL("total %zu, len %zu", w.total, full_len);

    curfew__jval *v = NULL;
    char err[256];
    r = curfew__json_parse(full, full_len, &v, err, sizeof(err));
    if (r != 0)
        FAIL("output does not parse (%d): %s\n%s", r, err, full);
    check_doc(v, pc, np);
    curfew__json_free(v);

    uint8_t seed = size ? data[size - 1] : 0;
    check_small(pc, np, full, full_len, 1 + seed % 64);
    check_small(pc, np, full, full_len, full_len);
    check_small(pc, np, full, full_len, full_len + 1);
    check_fd(pc, np, full, full_len, 16 + seed % 241);
    check_nesting(1 + (size ? data[0] : 0) % 40, pc, np);

    free(full);
    for (size_t i = 0; i < np; i++)
        free(pc[i].key);
    return 0;
}
