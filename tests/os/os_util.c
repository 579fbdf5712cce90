/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "os_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define OS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OS_TSAN 1
#endif
#endif
#ifndef OS_TSAN
#define OS_TSAN 0
#endif

void os_tmpdir(char *out, size_t size)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, size, "%s/curfew-os.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(out))
        th_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    if (OS_TSAN) {
        const char *old = getenv("TSAN_OPTIONS");
        if (!old || !strstr(old, "atexit_sleep_ms")) {
            char opts[1024];
            snprintf(opts, sizeof(opts), "%s%satexit_sleep_ms=0",
                     old ? old : "", old && *old ? ":" : "");
            setenv("TSAN_OPTIONS", opts, 1);
        }
    }
}

void os_done(const char *dir)
{
    th_remove_dir(dir);
}

void os_path(char *out, size_t size, const char *dir, const char *name)
{
    if ((size_t)snprintf(out, size, "%s/%s", dir, name) >= size)
        th_fail(__FILE__, __LINE__, "path too long");
}

char *os_read_file(const char *path)
{
    return th_read_file(path, NULL);
}

char *os_wait_file(const char *path, const char *text, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        char *s = os_read_file(path);
        if (s && (!text || strstr(s, text)))
            return s;
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "%s: no \"%s\" after %lld ms: %s", path,
                    text ? text : "", (long long)timeout_ms,
                    s ? s : "(no file)");
        free(s);
        th_sleep_ms(5);
    }
}

void os_pipe(int fds[2])
{
    if (pipe(fds) != 0)
        th_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
}

char os_read_byte(int fd, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - th_now_ms();
        if (left < 0)
            th_fail(__FILE__, __LINE__, "no byte from the child in %lld ms",
                    (long long)timeout_ms);
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0) {
            char c;
            ssize_t n = read(fd, &c, 1);
            if (n == 1)
                return c;
            if (n == 0)
                th_fail(__FILE__, __LINE__, "the child closed its pipe");
        }
    }
}

void os_put_byte(int fd, char c)
{
    while (write(fd, &c, 1) < 0 && errno == EINTR)
        ;
}

void os_redirect_stderr(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
    }
}

static void *note_tid(void *arg)
{
    *(int *)arg = (int)syscall(SYS_gettid);
    return NULL;
}

static int count_tasks(void);

/* The task of a joined thread leaves /proc/self/task a moment after the
 * join (later on a loaded machine). */
static void wait_task_gone(int tid, int64_t limit_ms)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d", tid);
    int64_t end = th_now_ms() + limit_ms;
    while (access(path, F_OK) == 0) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "thread %d still in %s after %lld ms",
                    tid, path, (long long)limit_ms);
        th_sleep_ms(1);
    }
}

int os_count_threads(void)
{
    static int warm;
    if (!warm) {
        pthread_t t;
        int tid = 0;
        if (pthread_create(&t, NULL, note_tid, &tid) == 0) {
            pthread_join(t, NULL);
            wait_task_gone(tid, 10000);
        }
        warm = 1;
    }
    return count_tasks();
}

int os_wait_threads(int want, int64_t limit_ms)
{
    int n = os_count_threads();
    int64_t end = th_now_ms() + limit_ms;
    while (n != want && th_now_ms() < end) {
        th_sleep_ms(2);
        n = count_tasks();
    }
    return n;
}

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        th_fail(__FILE__, __LINE__, "opendir /proc/self/task failed");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}
