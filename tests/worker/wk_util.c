/* SPDX-License-Identifier: MIT */
#include "wk_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define WK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WK_TSAN 1
#endif
#endif
#ifndef WK_TSAN
#define WK_TSAN 0
#endif

int wk_tsan(void)
{
    return WK_TSAN;
}

/* ---- gates ---------------------------------------------------------------
 */

void wk_gate_init(wk_gate *g)
{
    CHECK_EQ(pthread_mutex_init(&g->mu, NULL), 0);
    CHECK_EQ(pthread_cond_init(&g->cv, NULL), 0);
    g->open = 0;
}

void wk_gate_open(wk_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void wk_gate_wait(wk_gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void wk_gate_destroy(wk_gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

void wk_hold_init(wk_hold *h)
{
    wk_gate_init(&h->gate);
    atomic_init(&h->entered, 0);
    atomic_init(&h->left, 0);
    h->state_inside = -1;
}

void wk_hold_task(curfew_worker *w, void *arg)
{
    wk_hold *h = arg;
    h->state_inside = curfew_worker_state(w);
    atomic_store(&h->entered, 1);
    wk_gate_wait(&h->gate);
    atomic_store(&h->left, 1);
}

void wk_hold_wait_entered(wk_hold *h, int64_t limit_ms)
{
    wk_wait_flag(&h->entered, 1, limit_ms);
}

void wk_hold_destroy(wk_hold *h)
{
    wk_gate_destroy(&h->gate);
}

/* ---- waits ---------------------------------------------------------------
 */

void wk_sleep_us(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000,
                          .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

void wk_wait_state(curfew_worker *w, int state, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    int st;
    while ((st = curfew_worker_state(w)) < state) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__,
                    "worker state %d after %" PRId64 " ms, wanted %d", st,
                    limit_ms, state);
        wk_sleep_us(200);
    }
}

void wk_wait_flag(atomic_int *v, int want, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    while (atomic_load(v) < want) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__,
                    "flag is %d after %" PRId64 " ms, wanted %d",
                    atomic_load(v), limit_ms, want);
        wk_sleep_us(200);
    }
}

/* ---- a coordinator by hand -----------------------------------------------
 */

int wk_drive_for(curfew *cf, int64_t ms)
{
    int64_t end = th_now_ms() + ms;
    for (;;) {
        int r = curfew_dispatch(cf);
        CHECK(r == 0 || r == 1);
        if (r == 1)
            return 1;
        int64_t left = end - th_now_ms();
        if (left <= 0)
            return 0;
        int t = curfew_timeout_ms(cf);
        if (t < 0 || t > left)
            t = (int)left;
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        int pr = poll(&p, 1, t);
        CHECK(pr >= 0 || errno == EINTR);
    }
}

void wk_drive(curfew *cf, int64_t limit_ms)
{
    if (!wk_drive_for(cf, limit_ms))
        th_fail(__FILE__, __LINE__,
                "shutdown not complete after %" PRId64 " ms (phase %s)",
                limit_ms, curfew_current_phase(cf));
}

/* ---- random numbers ------------------------------------------------------
 */

uint32_t wk_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

uint32_t wk_seed(const char *test)
{
    const char *env = getenv("WK_SEED");
    uint32_t seed;
    if (env && *env) {
        seed = (uint32_t)strtoul(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec ^
               ((uint32_t)getpid() << 16);
    }
    if (!seed)
        seed = 1;
    fprintf(stderr, "%s: WK_SEED=%" PRIu32 "\n", test, seed);
    return seed;
}

/* ---- files ---------------------------------------------------------------
 */

void wk_tmpdir(char *out, size_t size)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(out, size, "%s/curfew-wk-XXXXXX", base);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "temporary path too long");
    if (!mkdtemp(out))
        th_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
}

void wk_rmdir(const char *dir)
{
    th_remove_dir(dir);
}

void wk_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "path too long: %s/%s", dir, name);
}

char *wk_read_file(const char *path, size_t *len)
{
    return th_read_file(path, len);
}

void wk_put_int(const char *dir, const char *name, int64_t value)
{
    char path[WK_PATH];
    wk_path(path, sizeof(path), dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        th_fail(__FILE__, __LINE__, "fopen %s: %s", path, strerror(errno));
    fprintf(f, "%" PRId64 "\n", value);
    if (fclose(f) != 0)
        th_fail(__FILE__, __LINE__, "fclose %s: %s", path, strerror(errno));
}

int64_t wk_get_int(const char *dir, const char *name)
{
    char path[WK_PATH];
    wk_path(path, sizeof(path), dir, name);
    char *text = wk_read_file(path, NULL);
    if (!text)
        th_fail(__FILE__, __LINE__, "%s is missing", path);
    int64_t v = strtoll(text, NULL, 10);
    free(text);
    return v;
}
