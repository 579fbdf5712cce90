/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define TH_MAX 512

static struct {
    const char *name;
    th_test_fn fn;
} tests[TH_MAX];
static int ntests;

static struct {
    const char *name;
    th_child_fn fn;
} children[TH_MAX];
static int nchildren;

void th_register_test(const char *name, th_test_fn fn)
{
    if (ntests == TH_MAX)
        abort();
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void th_register_child(const char *name, th_child_fn fn)
{
    if (nchildren == TH_MAX)
        abort();
    children[nchildren].name = name;
    children[nchildren].fn = fn;
    nchildren++;
}

void th_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

pid_t th_spawn_child(const char *name, ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;
    argv[n++] = "/proc/self/exe";
    argv[n++] = "--child";
    argv[n++] = (char *)name;
    va_start(ap, name);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 63;)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid;
    int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
    if (rc != 0)
        th_fail(__FILE__, __LINE__, "posix_spawn: %s", strerror(rc));
    return pid;
}

int th_wait_child(pid_t pid, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            th_fail(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
        if (th_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            th_fail(__FILE__, __LINE__,
                    "child %d did not exit in %" PRId64 " ms", (int)pid,
                    timeout_ms);
        }
        th_sleep_ms(2);
    }
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--child") == 0) {
        for (int i = 0; i < nchildren; i++)
            if (strcmp(children[i].name, argv[2]) == 0)
                return children[i].fn(argc - 3, argv + 3);
        fprintf(stderr, "no child helper named %s\n", argv[2]);
        return 127;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < ntests; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASE | --list | --child NAME [ARGS]\n",
                argv[0]);
        return 2;
    }
    for (int i = 0; i < ntests; i++) {
        if (strcmp(tests[i].name, argv[1]) == 0) {
            tests[i].fn();
            printf("ok %s\n", tests[i].name);
            return 0;
        }
    }
    fprintf(stderr, "no test case named %s\n", argv[1]);
    return 2;
}

char *th_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *more = realloc(buf, cap * 2);
            if (!more) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = more;
            cap *= 2;
        }
        ssize_t k = read(fd, buf + n, cap - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fd);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

void th_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[4096];
            if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) <
                sizeof(path))
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void *note_tid(void *arg)
{
    *(int *)arg = (int)syscall(SYS_gettid);
    return NULL;
}

void th_warm_threads(void)
{
    pthread_t th;
    int tid = 0;
    if (pthread_create(&th, NULL, note_tid, &tid) != 0)
        th_fail(__FILE__, __LINE__, "pthread_create failed");
    pthread_join(th, NULL);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d", tid);
    int64_t end = th_now_ms() + 10000;
    while (access(path, F_OK) == 0) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "thread %d still in %s after 10 s", tid,
                    path);
        th_sleep_ms(1);
    }
}
