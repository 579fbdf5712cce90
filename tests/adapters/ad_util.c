/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "ad_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdarg.h>
#include <unistd.h>

extern char **environ;

typedef struct job {
    ad_jobs *j;
    int i;
} job;

static job g_jobs[64];

static void *job_main(void *arg)
{
    job *jb = arg;
    th_sleep_ms(jb->j->delay_ms[jb->i]);
    curfew_blocker_done(jb->j->handles[jb->i]);
    return NULL;
}

static int job_trigger(curfew_blocker self, void *arg)
{
    job *jb = arg;
    ad_jobs *j = jb->j;
    if (!pthread_equal(pthread_self(), j->trigger_thread))
        atomic_store(&j->wrong_thread, 1);
    pthread_mutex_lock(&j->lock);
    j->handles[jb->i] = self;
    pthread_mutex_unlock(&j->lock);
    if (pthread_create(&j->threads[jb->i], NULL, job_main, jb) != 0)
        return -EAGAIN;
    atomic_fetch_add(&j->started, 1);
    return CURFEW_PENDING;
}

void ad_jobs_init(ad_jobs *j, pthread_t loop_thread)
{
    memset(j, 0, sizeof(*j));
    j->trigger_thread = loop_thread;
    pthread_mutex_init(&j->lock, NULL);
}

void ad_jobs_add(ad_jobs *j, curfew_barrier *barrier, const char *prefix, int n,
                 int spread_ms)
{
    for (int k = 0; k < n; k++) {
        CHECK(j->n < 64);
        int i = j->n++;
        g_jobs[i].j = j;
        g_jobs[i].i = i;
        j->delay_ms[i] =
            5 + (int)((unsigned)(i * 37) % (unsigned)(spread_ms + 1));
        char name[64];
        snprintf(name, sizeof(name), "%s-%d", prefix, k + 1);
        curfew_blocker b;
        CHECK_EQ(curfew_add_blocker(barrier, name, job_trigger, &g_jobs[i], &b),
                 0);
    }
}

void ad_jobs_check(ad_jobs *j)
{
    CHECK_EQ(atomic_load(&j->started), j->n);
    for (int i = 0; i < j->n; i++) {
        pthread_join(j->threads[i], NULL);
        CHECK_EQ(curfew_blocker_result(j->handles[i], NULL), CURFEW_RESULT_OK);
    }
    CHECK_EQ(atomic_load(&j->wrong_thread), 0);
}

typedef struct later {
    curfew *cf;
    int delay_ms;
} later;

static void *begin_main(void *arg)
{
    later l = *(later *)arg;
    free(arg);
    th_sleep_ms(l.delay_ms);
    if (curfew_begin(l.cf) != 0)
        abort();
    return NULL;
}

pthread_t ad_begin_later(curfew *cf, int delay_ms)
{
    later *l = malloc(sizeof(*l));
    CHECK(l != NULL);
    l->cf = cf;
    l->delay_ms = delay_ms;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, begin_main, l) == 0);
    return t;
}

void ad_join(pthread_t t)
{
    pthread_join(t, NULL);
}

pid_t ad_spawn(int *out_fd, const char *path, ...)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)path;
    va_list ap;
    va_start(ap, path);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 15;)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0)
        th_fail(__FILE__, __LINE__, "posix_spawn %s: %s", path, strerror(rc));
    *out_fd = p[0];
    return pid;
}

static int read_some(int fd, char *c, int64_t end)
{
    for (;;) {
        int64_t left = end - th_now_ms();
        if (left < 0)
            return -ETIMEDOUT;
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0) {
            ssize_t n = read(fd, c, 1);
            if (n < 0 && errno == EINTR)
                continue;
            return (int)n;
        }
    }
}

void ad_read_line(int fd, char *buf, size_t size, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    size_t len = 0;
    for (;;) {
        char c;
        int r = read_some(fd, &c, end);
        if (r <= 0) {
            buf[len] = '\0';
            th_fail(__FILE__, __LINE__, "no line from the program (%s): %s",
                    r == 0 ? "EOF" : "timeout", buf);
        }
        if (c == '\n')
            break;
        if (len + 1 < size)
            buf[len++] = c;
    }
    buf[len] = '\0';
}

void ad_read_rest(int fd, char *buf, size_t size, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    size_t len = 0;
    for (;;) {
        char c;
        int r = read_some(fd, &c, end);
        if (r < 0)
            th_fail(__FILE__, __LINE__, "no EOF from the program: %.*s",
                    (int)len, buf);
        if (r == 0)
            break;
        if (len + 1 < size)
            buf[len++] = c;
    }
    buf[len] = '\0';
}

void ad_child_env(void)
{
#if defined(__SANITIZE_THREAD__)
    const char *old = getenv("TSAN_OPTIONS");
    if (!old || !strstr(old, "atexit_sleep_ms")) {
        char opts[1024];
        snprintf(opts, sizeof(opts), "%s%satexit_sleep_ms=0", old ? old : "",
                 old && *old ? ":" : "");
        setenv("TSAN_OPTIONS", opts, 1);
    }
#endif
}
