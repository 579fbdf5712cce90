/* Reading the previous run's shutdown record (R2) back at start-up, so a
 * program can say how its last shutdown ended.
 *
 * SPDX-License-Identifier: MIT
 *
 * The record is untrusted input (another version of the program, a disk
 * error, a user's editor may have touched it): it is read with a size bound
 * and parsed with the strict reader, and every field used is type-checked,
 * so anything that is not a well-formed version 1 record gives -EPROTO.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "jsonr.h"

#include <curfew/report.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A record holds a few hundred bytes per blocker; anything this large is
 * not one, and reading it whole would only waste the starting program's
 * memory. */
#define PREV_MAX_BYTES ((size_t)64 << 20)

static int prev_read_file(const char *path, char **out, size_t *outlen)
{
    /* O_NONBLOCK: a FIFO planted at the path must not stall start-up. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    int r = 0;
    char *buf = NULL;
    size_t n = 0, cap;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        r = -EISDIR;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uintmax_t)st.st_size > PREV_MAX_BYTES) {
        r = -EPROTO;
        goto out;
    }
    /* One byte more than the size, so that the end is seen without
     * growing; the file may still grow while it is read. */
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap > PREV_MAX_BYTES) {
                r = -EPROTO;
                goto out;
            }
            size_t ncap =
                cap > PREV_MAX_BYTES / 2 ? PREV_MAX_BYTES + 1 : cap * 2;
            char *nbuf = realloc(buf, ncap);
            if (!nbuf) {
                r = -ENOMEM;
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        ssize_t m = read(fd, buf + n, cap - n);
        if (m < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        if (m == 0)
            break;
        n += (size_t)m;
    }
out:
    close(fd);
    if (r) {
        free(buf);
        return r;
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* Copies src into dst (size bytes), cut so as not to end inside a UTF-8
 * sequence. */
static void prev_copy(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int prev_is_pending(const curfew__jval *blocker)
{
    const char *res = curfew__json_str(curfew__json_get(blocker, "result"));
    return res && strcmp(res, "pending") == 0;
}

/* Appends len bytes of s at dst + *n without passing limit; a cut falls
 * before a whole character. Returns 0 when everything fit. */
static int prev_put(char *dst, size_t *n, size_t limit, const char *s,
                    size_t len)
{
    int full = 0;
    if (len > limit - *n) {
        len = limit - *n;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
        full = 1;
    }
    memcpy(dst + *n, s, len);
    *n += len;
    return full;
}

/* The pending blockers' names, ", " between them; when they do not all
 * fit, as many as fit followed by "...". */
static void prev_join(const curfew__jval *blockers, char *dst, size_t size)
{
    size_t total = 0, n = 0;
    int any = 0;
    for (size_t k = 0; k < blockers->n; k++) {
        const curfew__jval *b = &blockers->items[k];
        if (!prev_is_pending(b))
            continue;
        total += (any ? 2 : 0) + strlen(curfew__json_get(b, "name")->str);
        any = 1;
    }
    int cut = total >= size;
    size_t limit = cut ? size - 4 : size - 1;
    any = 0;
    for (size_t k = 0; k < blockers->n; k++) {
        const curfew__jval *b = &blockers->items[k];
        if (!prev_is_pending(b))
            continue;
        const char *name = curfew__json_get(b, "name")->str;
        if ((any && prev_put(dst, &n, limit, ", ", 2)) ||
            prev_put(dst, &n, limit, name, strlen(name)))
            break;
        any = 1;
    }
    if (cut) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

static int prev_is(const curfew__jval *v, curfew__jtype t)
{
    return v && v->type == t;
}

/* A time field: an integral number or null. */
static int prev_time_ok(const curfew__jval *v)
{
    return v && (v->type == CURFEW__J_NULL ||
                 (v->type == CURFEW__J_NUM && v->is_int));
}

/* R2: every field this reader relies on is checked here once, so the code
 * after it may take their presence and types for granted. */
static int prev_check(const curfew__jval *doc)
{
    if (!prev_is(doc, CURFEW__J_OBJ))
        return -EPROTO;
    const char *type = curfew__json_str(curfew__json_get(doc, "type"));
    const curfew__jval *ver = curfew__json_get(doc, "version");
    if (!type || strcmp(type, "curfew-record") != 0 ||
        !prev_is(ver, CURFEW__J_NUM) || !ver->is_int || ver->i != 1)
        return -EPROTO;
    const curfew__jval *pid = curfew__json_get(doc, "pid");
    const curfew__jval *proc = curfew__json_get(doc, "process");
    const curfew__jval *exit_after = curfew__json_get(doc, "exit_after");
    const curfew__jval *phases = curfew__json_get(doc, "phases");
    if (!prev_is(pid, CURFEW__J_NUM) || !pid->is_int ||
        !(prev_is(proc, CURFEW__J_STR) || prev_is(proc, CURFEW__J_NULL)) ||
        !prev_is(curfew__json_get(doc, "clean"), CURFEW__J_BOOL) ||
        (exit_after && !prev_is(exit_after, CURFEW__J_STR) &&
         !prev_is(exit_after, CURFEW__J_NULL)) ||
        !prev_is(phases, CURFEW__J_ARR))
        return -EPROTO;
    for (size_t i = 0; i < phases->n; i++) {
        const curfew__jval *ph = &phases->items[i];
        const curfew__jval *bl = curfew__json_get(ph, "blockers");
        if (!prev_is(ph, CURFEW__J_OBJ) ||
            !curfew__json_str(curfew__json_get(ph, "name")) ||
            !prev_time_ok(curfew__json_get(ph, "start_ms")) ||
            !prev_time_ok(curfew__json_get(ph, "end_ms")) ||
            !prev_is(bl, CURFEW__J_ARR))
            return -EPROTO;
        for (size_t k = 0; k < bl->n; k++) {
            const curfew__jval *b = &bl->items[k];
            if (!prev_is(b, CURFEW__J_OBJ) ||
                !curfew__json_str(curfew__json_get(b, "name")) ||
                !curfew__json_str(curfew__json_get(b, "result")))
                return -EPROTO;
        }
    }
    return 0;
}

static void prev_fill(const curfew__jval *doc, curfew_previous *out)
{
    const curfew__jval *phases = curfew__json_get(doc, "phases");
    const curfew__jval *last = NULL;
    int64_t end_max = -1;
    out->clean = curfew__json_get(doc, "clean")->boolean;
    out->pid = curfew__json_get(doc, "pid")->i;
    const char *proc = curfew__json_str(curfew__json_get(doc, "process"));
    prev_copy(out->process, sizeof(out->process), proc ? proc : "");
    for (size_t i = 0; i < phases->n; i++) {
        const curfew__jval *ph = &phases->items[i];
        const curfew__jval *end = curfew__json_get(ph, "end_ms");
        if (curfew__json_get(ph, "start_ms")->type == CURFEW__J_NUM)
            last = ph;
        if (end->type == CURFEW__J_NUM && end->i > end_max)
            end_max = end->i;
    }
    if (last) {
        const curfew__jval *bl = curfew__json_get(last, "blockers");
        prev_copy(out->phase, sizeof(out->phase),
                  curfew__json_get(last, "name")->str);
        for (size_t k = 0; k < bl->n; k++)
            out->pending += prev_is_pending(&bl->items[k]) ? 1u : 0u;
        prev_join(bl, out->blockers, sizeof(out->blockers));
    }

    /* The sizes of phase and blockers keep every sentence below within
     * summary, so snprintf never cuts one. */
    const char *lead = "the last shutdown";
    if (out->clean) {
        int64_t ms =
            curfew__json_int(curfew__json_get(doc, "elapsed_ms"), end_max);
        const char *fast =
            curfew__json_str(curfew__json_get(doc, "exit_after"));
        char took[40] = "";
        if (ms >= 0)
            snprintf(took, sizeof(took), " in %" PRId64 " ms", ms);
        if (fast) {
            char phase[sizeof(out->phase)];
            prev_copy(phase, sizeof(phase), fast);
            snprintf(out->summary, sizeof(out->summary),
                     "%s completed cleanly%s (fast exit after %s)", lead, took,
                     phase);
        } else {
            snprintf(out->summary, sizeof(out->summary),
                     "%s completed cleanly%s", lead, took);
        }
    } else if (!last) {
        snprintf(out->summary, sizeof(out->summary),
                 "%s did not finish: it never began a phase", lead);
    } else if (out->pending) {
        snprintf(out->summary, sizeof(out->summary),
                 "%s did not finish: blocked in %s by %s", lead, out->phase,
                 out->blockers);
    } else if (curfew__json_get(last, "end_ms")->type == CURFEW__J_NUM) {
        snprintf(out->summary, sizeof(out->summary),
                 "%s did not finish: it stopped after %s completed", lead,
                 out->phase);
    } else {
        snprintf(out->summary, sizeof(out->summary),
                 "%s did not finish: it stopped in %s with no blocker pending",
                 lead, out->phase);
    }
}

/* R2. Besides the errors listed in curfew/report.h: an empty path gives
 * -EINVAL; a directory -EISDIR; a file larger than 64 MiB, or anything but
 * a regular file, -EPROTO (no curfew record is that large, and a FIFO or a
 * device is not a record). *out is zeroed first, also on failure. */
int curfew_record_read_previous(const char *path, curfew_previous *out)
{
    if (!path || !out)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (!*path)
        return -EINVAL;
    char *text = NULL;
    size_t len = 0;
    int r = prev_read_file(path, &text, &len);
    if (r)
        return r;
    curfew__jval *doc = NULL;
    r = curfew__json_parse(text, len, &doc, NULL, 0);
    free(text);
    if (r)
        return r;
    r = prev_check(doc);
    if (r == 0)
        prev_fill(doc, out);
    curfew__json_free(doc);
    return r;
}
