/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "wd_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define WD_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WD_TSAN 1
#endif
#endif
#ifndef WD_TSAN
#define WD_TSAN 0
#endif

int wd_tsan(void)
{
    return WD_TSAN;
}

int64_t wd_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- files ----------------------------------------------------------------
 */

static char kept_dir[WD_PATH];
static int kept_armed;

/* On a failed check (th_fail exits), show what the child wrote on its
 * standard error: sanitizer reports and curfew's own lines land there. */
static void show_on_failure(void)
{
    if (!kept_armed)
        return;
    char path[WD_PATH];
    wd_path(path, sizeof(path), kept_dir, "stderr");
    size_t len;
    char *text = wd_read_file(path, &len);
    fprintf(stderr, "(test files kept in %s)\n", kept_dir);
    if (text && len) {
        fprintf(stderr, "---- the child's standard error ----\n%s", text);
        if (text[len - 1] != '\n')
            fputc('\n', stderr);
        fprintf(stderr, "----\n");
    }
    free(text);
}

void wd_tmpdir(char *out, size_t size)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(out, size, "%s/curfew-wd-XXXXXX", base);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "temporary path too long");
    if (!mkdtemp(out))
        th_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    snprintf(kept_dir, sizeof(kept_dir), "%s", out);
    if (WD_TSAN) {
        /* Children exit when the watchdog says so; their exit time is
         * measured, so TSan must not sleep a second in _exit first. */
        const char *old = getenv("TSAN_OPTIONS");
        if (!old || !strstr(old, "atexit_sleep_ms")) {
            char opts[1024];
            snprintf(opts, sizeof(opts), "%s%satexit_sleep_ms=0",
                     old ? old : "", old && *old ? ":" : "");
            setenv("TSAN_OPTIONS", opts, 1);
        }
    }
    if (!kept_armed)
        atexit(show_on_failure);
    kept_armed = 1;
}

void wd_done(const char *dir)
{
    th_remove_dir(dir);
    kept_armed = 0;
}

void wd_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "path too long: %s/%s", dir, name);
}

char *wd_read_file(const char *path, size_t *len)
{
    return th_read_file(path, len);
}

/* ---- child side ------------------------------------------------------------
 */

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

void wd_child_setup(const char *dir)
{
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "stderr");
    int fd =
        open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        exit(120);
    if (dup2(fd, 2) < 0)
        exit(121);
    close(fd);
    setvbuf(stderr, NULL, _IONBF, 0);
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
#ifdef PR_SET_DUMPABLE
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* also for a piped core_pattern */
#endif
}

/* Formats a signed integer without stdio (snprintf may lock nothing, but
 * these helpers also run while stderr's lock is held on purpose). */
static size_t fmt_i64(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[k++] = '-';
    while (n)
        out[k++] = tmp[--n];
    return k;
}

void wd_info(const char *dir, const char *key, int64_t value)
{
    char path[WD_PATH];
    char line[160];
    size_t klen = strlen(key), n = 0;
    wd_path(path, sizeof(path), dir, "info");
    if (klen > 100)
        klen = 100;
    memcpy(line, key, klen);
    n = klen;
    line[n++] = ' ';
    n += fmt_i64(line + n, value);
    line[n++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    write_all(fd, line, n);
    close(fd);
}

void wd_put_file(const char *dir, const char *name, const char *text,
                 size_t len)
{
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    write_all(fd, text, len);
    close(fd);
}

/* ---- parent side -----------------------------------------------------------
 */

int wd_info_get(const char *dir, const char *key, int64_t *value)
{
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "info");
    char *text = wd_read_file(path, NULL);
    if (!text)
        return 0;
    size_t klen = strlen(key);
    int found = 0;
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (!end)
            break; /* a line being written */
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            *value = strtoll(line + klen + 1, NULL, 10);
            found = 1;
        }
        line = end + 1;
    }
    free(text);
    return found;
}

int64_t wd_info_need(const char *dir, const char *key)
{
    int64_t v = 0;
    if (!wd_info_get(dir, key, &v))
        th_fail(__FILE__, __LINE__, "the child recorded no \"%s\"", key);
    return v;
}

static int try_reap(pid_t pid, int *status)
{
    pid_t r;
    do
        r = waitpid(pid, status, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        th_fail(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
    return r == pid;
}

int wd_wait_exit(pid_t pid, int64_t timeout_ms, int64_t *t_exit_ns)
{
    int64_t end = wd_mono_ns() + timeout_ms * 1000000;
    int status = 0;
    int pfd = -1;
#ifdef SYS_pidfd_open
    pfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    for (;;) {
        if (try_reap(pid, &status)) {
            if (t_exit_ns)
                *t_exit_ns = wd_mono_ns();
            break;
        }
        int64_t left = end - wd_mono_ns();
        if (left <= 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (pfd >= 0)
                close(pfd);
            th_fail(__FILE__, __LINE__,
                    "child %d did not exit in %" PRId64 " ms", (int)pid,
                    timeout_ms);
        }
        if (pfd >= 0) {
            /* Readable the moment the child ends. */
            struct pollfd p = {.fd = pfd, .events = POLLIN};
            int ms = left / 1000000 > 100 ? 100 : (int)(left / 1000000) + 1;
            (void)poll(&p, 1, ms);
        } else {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
        }
    }
    if (pfd >= 0)
        close(pfd);
    return status;
}

void wd_expect_exit(int status, int code)
{
    if (WIFSIGNALED(status))
        th_fail(__FILE__, __LINE__,
                "child killed by signal %d, expected exit status %d",
                WTERMSIG(status), code);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
        th_fail(__FILE__, __LINE__, "child exit status %d, expected %d",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1, code);
}

void wd_expect_signal(int status, int sig)
{
    if (WIFEXITED(status))
        th_fail(__FILE__, __LINE__,
                "child exited with status %d, expected signal %d",
                WEXITSTATUS(status), sig);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != sig)
        th_fail(__FILE__, __LINE__, "child killed by signal %d, expected %d",
                WIFSIGNALED(status) ? WTERMSIG(status) : -1, sig);
}

/* ---- JSON ------------------------------------------------------------------
 */

curfew__jval *wd_parse_text(const char *text, size_t len, const char *what)
{
    curfew__jval *v = NULL;
    char err[256] = "";
    int r = curfew__json_parse(text, len, &v, err, sizeof(err));
    if (r != 0 || !v)
        th_fail(__FILE__, __LINE__, "%s does not parse (%d): %s\n%.*s", what, r,
                err, (int)(len > 2000 ? 2000 : len), text);
    return v;
}

curfew__jval *wd_parse_file(const char *path)
{
    size_t len;
    char *text = wd_read_file(path, &len);
    if (!text)
        th_fail(__FILE__, __LINE__, "%s: %s", path, strerror(errno));
    curfew__jval *v = wd_parse_text(text, len, path);
    free(text);
    return v;
}

static const char *type_name(curfew__jtype t)
{
    static const char *const names[] = {"null",   "bool",  "number",
                                        "string", "array", "object"};
    return (unsigned)t < 6 ? names[t] : "?";
}

const curfew__jval *wd_jget(const curfew__jval *o, const char *key,
                            curfew__jtype t)
{
    const curfew__jval *v = curfew__json_get(o, key);
    if (!v)
        th_fail(__FILE__, __LINE__, "no key \"%s\"", key);
    if (v->type != t)
        th_fail(__FILE__, __LINE__, "\"%s\" is a %s, expected a %s", key,
                type_name(v->type), type_name(t));
    return v;
}

const char *wd_jstr(const curfew__jval *o, const char *key)
{
    return wd_jget(o, key, CURFEW__J_STR)->str;
}

int64_t wd_jint(const curfew__jval *o, const char *key)
{
    const curfew__jval *v = wd_jget(o, key, CURFEW__J_NUM);
    if (!v->is_int)
        th_fail(__FILE__, __LINE__, "\"%s\" is not an integer", key);
    return v->i;
}

int wd_jbool(const curfew__jval *o, const char *key)
{
    return wd_jget(o, key, CURFEW__J_BOOL)->boolean;
}

int wd_jnull(const curfew__jval *o, const char *key)
{
    const curfew__jval *v = curfew__json_get(o, key);
    if (!v)
        th_fail(__FILE__, __LINE__, "no key \"%s\"", key);
    return v->type == CURFEW__J_NULL;
}

const curfew__jval *wd_jfind(const curfew__jval *arr, const char *key,
                             const char *value)
{
    if (!arr || arr->type != CURFEW__J_ARR)
        return NULL;
    for (size_t i = 0; i < arr->n; i++) {
        const char *s = curfew__json_str(curfew__json_get(&arr->items[i], key));
        if (s && strcmp(s, value) == 0)
            return &arr->items[i];
    }
    return NULL;
}

const char *wd_jat_str(const curfew__jval *arr, size_t i)
{
    if (!arr || arr->type != CURFEW__J_ARR || i >= arr->n ||
        arr->items[i].type != CURFEW__J_STR)
        th_fail(__FILE__, __LINE__, "item %zu is not a string", i);
    return arr->items[i].str;
}

/* ---- text and threads
 * -------------------------------------------------------- */

int wd_lines(const char *text, const char *prefix, const char **first,
             size_t *first_len)
{
    int count = 0;
    size_t plen = strlen(prefix);
    if (first)
        *first = NULL;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len >= plen && memcmp(line, prefix, plen) == 0) {
            if (count == 0 && first) {
                *first = line;
                if (first_len)
                    *first_len = len;
            }
            count++;
        }
        line = end ? end + 1 : NULL;
    }
    return count;
}

int wd_task_ids(int *out, int max)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        th_fail(__FILE__, __LINE__, "/proc/self/task: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        if (n < max)
            out[n] = atoi(e->d_name);
        n++;
    }
    closedir(d);
    return n < max ? n : max;
}

int wd_task_count(void)
{
    int ids[256];
    return wd_task_ids(ids, 256);
}

int64_t wd_ctx_switches(int tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
    char *text = wd_read_file(path, NULL);
    if (!text)
        return -1;
    int64_t sum = 0;
    int found = 0;
    for (char *p = text; (p = strstr(p, "ctxt_switches:")) != NULL; p++) {
        sum += strtoll(p + strlen("ctxt_switches:"), NULL, 10);
        found++;
    }
    free(text);
    return found == 2 ? sum : -1;
}

void wd_warm_threads(void)
{
    th_warm_threads();
}
