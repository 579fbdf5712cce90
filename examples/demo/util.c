/* curfew-demo: small helpers (time, bytes, files, text, a timer thread).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* sigabbrev_np */
#include "demo.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

uint32_t rng_next(uint32_t *state)
{
    /* xorshift32: enough to vary the simulated activity. */
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
}

uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | p[i];
    return v;
}

uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    /* The new thread inherits the mask in force here. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

int make_dirs(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int r = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            r = -errno;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    return r;
}

int read_file(const char *path, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    struct buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    int err = ferror(f) ? -EIO : 0;
    fclose(f);
    buf_append(&b, "", 0); /* the NUL, also for an empty file */
    if (!err && b.failed)
        err = -ENOMEM;
    if (err) {
        buf_free(&b);
        return err;
    }
    *data = b.p;
    *len = b.len;
    return 0;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
    if (b->failed)
        return;
    if (b->cap - b->len <= len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void buf_json_str(struct buf *b, const char *s)
{
    buf_printf(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            buf_printf(b, "\\%c", *c);
        else if (*c < 0x20)
            buf_printf(b, "\\u%04x", *c);
        else
            buf_printf(b, "%c", *c);
    }
    buf_printf(b, "\"");
}

void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void describe_status(int status, char *out, size_t size)
{
    if (WIFEXITED(status)) {
        snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        snprintf(out, size, "killed by signal %d (SIG%s)", WTERMSIG(status),
                 abbrev ? abbrev : "?");
    } else {
        snprintf(out, size, "wait status %#x", status);
    }
}

/* ---- the timer thread ------------------------------------------------------
 *
 * Simulated work (a page's unload handler, a module's teardown) takes time
 * without holding a thread of its own: it is a chain of callbacks on this
 * one thread, each finishing a step and asking for the next. */

#define LATER_MAX 128

struct later_ent {
    int64_t due;
    void (*fn)(void *arg);
    void *arg;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    struct later_ent ents[LATER_MAX];
    int n;
} lt = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void *later_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lt.mu);
    while (!lt.stop) {
        int first = -1;
        for (int i = 0; i < lt.n; i++)
            if (first < 0 || lt.ents[i].due < lt.ents[first].due)
                first = i;
        if (first < 0) {
            pthread_cond_wait(&lt.cv, &lt.mu);
            continue;
        }
        int64_t due = lt.ents[first].due;
        if (due > mono_ms()) {
            struct timespec ts = {(time_t)(due / 1000),
                                  (long)(due % 1000) * 1000000L};
            pthread_cond_timedwait(&lt.cv, &lt.mu, &ts);
            continue;
        }
        struct later_ent e = lt.ents[first];
        lt.ents[first] = lt.ents[--lt.n];
        pthread_mutex_unlock(&lt.mu);
        e.fn(e.arg);
        pthread_mutex_lock(&lt.mu);
    }
    pthread_mutex_unlock(&lt.mu);
    return NULL;
}

int later_start(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    /* Deadlines are CLOCK_MONOTONIC, like mono_ms(). */
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&lt.cv, &ca);
    pthread_condattr_destroy(&ca);
    int r = start_thread(&lt.thread, later_main, NULL);
    if (r)
        return -r;
    pthread_mutex_lock(&lt.mu);
    lt.started = 1;
    pthread_mutex_unlock(&lt.mu);
    return 0;
}

int later(int64_t delay_ms, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&lt.mu);
    int r = 0;
    if (!lt.started || lt.stop)
        r = -ESHUTDOWN;
    else if (lt.n == LATER_MAX)
        r = -ENOSPC;
    else
        lt.ents[lt.n++] = (struct later_ent){mono_ms() + delay_ms, fn, arg};
    pthread_cond_signal(&lt.cv);
    pthread_mutex_unlock(&lt.mu);
    return r;
}

void later_stop(void)
{
    pthread_mutex_lock(&lt.mu);
    int started = lt.started && !lt.stop;
    lt.stop = 1;
    pthread_cond_signal(&lt.cv);
    pthread_mutex_unlock(&lt.mu);
    if (started) {
        pthread_join(lt.thread, NULL);
        pthread_cond_destroy(&lt.cv);
    }
}
