/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "io_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define IO_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define IO_TSAN 1
#endif
#endif
#ifndef IO_TSAN
#define IO_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define IO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IO_ASAN 1
#endif
#endif
#ifndef IO_ASAN
#define IO_ASAN 0
#endif

int io_tsan(void)
{
    return IO_TSAN;
}

int io_sanitized(void)
{
    return IO_TSAN || IO_ASAN;
}

/* ---- files ----------------------------------------------------------------
 */

/* Directories made by io_tmpdir(), removed at exit even when a check
 * failed (th_fail exits), unless CURFEW_TEST_KEEP is set. */
static char made[8][IO_PATH];
static int nmade;

static void remove_made(void)
{
    const char *keep = getenv("CURFEW_TEST_KEEP");
    for (int i = 0; i < nmade; i++) {
        if (access(made[i], F_OK) != 0)
            continue;
        if (keep && *keep)
            fprintf(stderr, "(test files kept in %s)\n", made[i]);
        else
            io_rmtree(made[i]);
    }
}

void io_tmpdir(char *out, size_t size)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(out, size, "%s/curfew-io-XXXXXX", base);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "temporary path too long");
    if (!mkdtemp(out))
        th_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    if (nmade == 0)
        atexit(remove_made);
    if (nmade < 8)
        snprintf(made[nmade++], IO_PATH, "%s", out);
}

static void rmtree_depth(const char *dir, int depth)
{
    chmod(dir, 0700);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[IO_PATH];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            io_path(path, sizeof(path), dir, e->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && depth < 4)
                rmtree_depth(path, depth + 1);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

void io_rmtree(const char *dir)
{
    rmtree_depth(dir, 0);
}

void io_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "path too long: %s/%s", dir, name);
}

char *io_read_file(const char *path, size_t *len)
{
    return th_read_file(path, len);
}

void io_put_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        th_fail(__FILE__, __LINE__, "fopen %s: %s", path, strerror(errno));
    if ((len && fwrite(data, 1, len, f) != len) || fclose(f) != 0)
        th_fail(__FILE__, __LINE__, "write %s: %s", path, strerror(errno));
}

int io_file_is(const char *path, const void *data, size_t len)
{
    size_t n;
    char *got = io_read_file(path, &n);
    int same = got && n == len && (len == 0 || memcmp(got, data, len) == 0);
    free(got);
    return same;
}

int io_count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        th_fail(__FILE__, __LINE__, "opendir %s: %s", dir, strerror(errno));
    int n = 0;
    size_t plen = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strncmp(e->d_name, prefix, plen) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int io_count_entries(const char *dir)
{
    return io_count_prefix(dir, "");
}

int io_mode_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

/* ---- self-checking contents -----------------------------------------------
 */

static uint64_t fnv64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static char payload_byte(uint64_t gen, size_t i)
{
    return (char)('a' + (gen * 7 + i * 13 + (i >> 9)) % 26);
}

char *io_make_rec(uint64_t gen, size_t len, size_t *size)
{
    char *body = malloc(len + 1);
    if (!body)
        th_fail(__FILE__, __LINE__, "out of memory");
    for (size_t i = 0; i < len; i++)
        body[i] = payload_byte(gen, i);
    char head[96];
    int h =
        snprintf(head, sizeof(head), "CFW1 %" PRIu64 " %zu %016" PRIx64 "\n",
                 gen, len, fnv64(body, len));
    char *out = malloc((size_t)h + len);
    if (!out)
        th_fail(__FILE__, __LINE__, "out of memory");
    memcpy(out, head, (size_t)h);
    memcpy(out + h, body, len);
    free(body);
    *size = (size_t)h + len;
    return out;
}

int io_parse_rec(const char *data, size_t size, uint64_t *gen,
                 const char **what)
{
    const char *why = "ok";
    int r = -1;
    const char *nl = size ? memchr(data, '\n', size < 96 ? size : 96) : NULL;
    char head[96];
    uint64_t g = 0, sum = 0;
    size_t len = 0;
    int used = 0;
    if (size == 0) {
        why = "empty";
    } else if (!nl) {
        why = "no header";
    } else {
        memcpy(head, data, (size_t)(nl - data));
        head[nl - data] = '\0';
        if (sscanf(head, "CFW1 %" SCNu64 " %zu %" SCNx64 "%n", &g, &len, &sum,
                   &used) != 3 ||
            head[used] != '\0') {
            why = "bad header";
        } else if (size - (size_t)(nl + 1 - data) != len) {
            why = "length does not match the header";
        } else if (fnv64(nl + 1, len) != sum) {
            why = "checksum does not match the header";
        } else {
            r = 0;
            for (size_t i = 0; i < len; i++) {
                if (nl[1 + i] != payload_byte(g, i)) {
                    why = "payload of another version";
                    r = -1;
                    break;
                }
            }
        }
    }
    if (r == 0 && gen)
        *gen = g;
    if (what)
        *what = why;
    return r;
}

/* ---- callbacks --------------------------------------------------------------
 */

void io_waiter_init(io_waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

void io_waiter_destroy(io_waiter *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

void io_cb(int result, void *arg)
{
    io_waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->calls++;
    w->last = result;
    if (result != 0 && w->errors++ == 0)
        w->first_err = result;
    pthread_t self = pthread_self();
    int seen = 0;
    for (int i = 0; i < w->ntids; i++)
        seen |= pthread_equal(w->tids[i], self);
    if (!seen && w->ntids < 8)
        w->tids[w->ntids++] = self;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void io_waiter_wait(io_waiter *w, int n, int64_t limit_ms)
{
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += (time_t)(limit_ms / 1000);
    end.tv_nsec += (long)(limit_ms % 1000) * 1000000;
    if (end.tv_nsec >= 1000000000) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&w->mu);
    while (w->calls < n) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &end) == ETIMEDOUT &&
            w->calls < n) {
            int calls = w->calls;
            pthread_mutex_unlock(&w->mu);
            th_fail(__FILE__, __LINE__,
                    "%d callbacks after %" PRId64 " ms, %d expected", calls,
                    limit_ms, n);
        }
    }
    pthread_mutex_unlock(&w->mu);
}

int io_waiter_calls(io_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->calls;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* ---- objects
 * ------------------------------------------------------------------
 */

curfew *io_new_cf(void)
{
    curfew *cf = NULL;
    int r = curfew_create(&cf, NULL);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_create: %s", curfew_strerror(r));
    return cf;
}

curfew_io *io_new_io(curfew *cf, const char *phase, unsigned threads)
{
    curfew_io_options o;
    memset(&o, 0, sizeof(o));
    o.phase = phase;
    o.threads = threads;
    curfew_io *io = NULL;
    int r = curfew_io_create(cf, &o, &io);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_io_create: %s", curfew_strerror(r));
    return io;
}

void io_destroy_io(curfew_io *io, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    int r;
    while ((r = curfew_io_destroy(io)) == -EBUSY && th_now_ms() < end)
        th_sleep_ms(1);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_io_destroy: %s",
                curfew_strerror(r));
}

void io_shutdown(curfew *cf, int64_t limit_ms)
{
    int r = curfew_begin(cf);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_begin: %s", curfew_strerror(r));
    int64_t end = th_now_ms() + limit_ms;
    for (;;) {
        r = curfew_dispatch(cf);
        if (r == 1)
            return;
        if (r < 0)
            th_fail(__FILE__, __LINE__, "curfew_dispatch: %s",
                    curfew_strerror(r));
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__,
                    "the shutdown did not end in %" PRId64 " ms", limit_ms);
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        poll(&p, 1, 20);
    }
}

curfew_io_stats io_stats_settled(curfew_io *io, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    curfew_io_stats st;
    for (;;) {
        int r = curfew_io_stats_get(io, &st);
        if (r != 0)
            th_fail(__FILE__, __LINE__, "curfew_io_stats_get: %s",
                    curfew_strerror(r));
        if (st.written + st.coalesced + st.failed == st.requested)
            return st;
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "io counters did not settle");
        th_sleep_ms(1);
    }
}

int io_thread_count(void)
{
    return io_count_entries("/proc/self/task");
}

int io_wait_thread_count(int want, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    int n;
    while ((n = io_thread_count()) != want && th_now_ms() < end)
        th_sleep_ms(2);
    return n;
}

void io_warm_threads(void)
{
    th_warm_threads();
}

uint32_t io_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 2463534242u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

void io_gate_init(io_gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = 0;
}

void io_gate_open(io_gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void io_gate_wait(io_gate *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

void io_gate_destroy(io_gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

void io_wait_flag(atomic_int *v, int want, int64_t limit_ms)
{
    int64_t end = th_now_ms() + limit_ms;
    while (atomic_load(v) < want) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__,
                    "flag is %d after %" PRId64 " ms, %d expected",
                    atomic_load(v), limit_ms, want);
        th_sleep_ms(1);
    }
}
