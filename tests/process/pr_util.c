/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "pr_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define PR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PR_TSAN 1
#endif
#endif
#ifndef PR_TSAN
#define PR_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PR_ASAN 1
#endif
#endif
#ifndef PR_ASAN
#define PR_ASAN 0
#endif

int pr_tsan(void)
{
    return PR_TSAN;
}

int pr_asan(void)
{
    return PR_ASAN;
}

int64_t pr_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- scratch directory and guard ----------------------------------------- */

static char kept[PR_PATH];
static int kept_armed;

static void note_kept(void)
{
    if (kept_armed)
        fprintf(stderr, "(test files kept in %s)\n", kept);
}

static void on_alarm(int sig)
{
    static const char msg[] = "test hung: the alarm of pr_begin() fired\n";
    (void)sig;
    ssize_t r = write(2, msg, sizeof(msg) - 1);
    (void)r;
    _exit(3);
}

void pr_begin(char *dir, size_t size, unsigned seconds)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    int n = snprintf(dir, size, "%s/curfew-pr-XXXXXX", base);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "temporary path too long");
    if (!mkdtemp(dir))
        th_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    snprintf(kept, sizeof(kept), "%s", dir);
    if (!kept_armed)
        atexit(note_kept);
    kept_armed = 1;
    if (PR_TSAN) {
        /* TSan sleeps a second in _exit by default; children exit at
         * FinishShutdown and their end is part of what is measured. */
        const char *old = getenv("TSAN_OPTIONS");
        if (!old || !strstr(old, "atexit_sleep_ms")) {
            char opts[1024];
            snprintf(opts, sizeof(opts), "%s%satexit_sleep_ms=0",
                     old ? old : "", old && *old ? ":" : "");
            setenv("TSAN_OPTIONS", opts, 1);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(seconds);
}

void pr_done(const char *dir)
{
    th_remove_dir(dir);
    kept_armed = 0;
    alarm(0);
}

void pr_path(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        th_fail(__FILE__, __LINE__, "path too long: %s/%s", dir, name);
}

char *pr_read_file(const char *path, size_t *len)
{
    return th_read_file(path, len);
}

/* ---- parent side ------------------------------------------------------------
 */

curfew *pr_parent(const char *dir, curfew_config *cfg, char *rec,
                  size_t rec_size)
{
    char path[PR_PATH];
    curfew_config local = {0};
    if (!cfg)
        cfg = &local;
    pr_path(path, sizeof(path), dir, "record.json");
    if (!cfg->record_path)
        cfg->record_path = path;
    if (rec)
        snprintf(rec, rec_size, "%s", cfg->record_path);
    curfew *cf = NULL;
    int r = curfew_create(&cf, cfg);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_create: %s", curfew_strerror(r));
    return cf;
}

curfew_proc *pr_spawn(curfew *cf, const curfew_proc_options *opts, ...)
{
    char *argv[40];
    int n = 0;
    argv[n++] = "/proc/self/exe";
    argv[n++] = "--child";
    argv[n++] = "pr_kid";
    va_list ap;
    va_start(ap, opts);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
        if (n == 39)
            th_fail(__FILE__, __LINE__, "too many child arguments");
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    curfew_proc *p = NULL;
    int r = curfew_proc_spawn(cf, argv, opts, &p);
    if (r != 0 || !p)
        th_fail(__FILE__, __LINE__, "curfew_proc_spawn: %s",
                curfew_strerror(r));
    return p;
}

void pr_ready_open(pr_ready *r)
{
    int fds[2];
    if (pipe(fds) != 0)
        th_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    r->rfd = fds[0];
    r->wfd = fds[1];
    snprintf(r->arg, sizeof(r->arg), "ready=%d", fds[1]);
}

void pr_ready_wait(pr_ready *r, int n, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    int got = 0;
    while (got < n) {
        int64_t left = end - th_now_ms();
        if (left <= 0)
            th_fail(__FILE__, __LINE__,
                    "only %d of %d children said they were ready in %" PRId64
                    " ms",
                    got, n, timeout_ms);
        struct pollfd pfd = {.fd = r->rfd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        char buf[256];
        ssize_t k = read(r->rfd, buf, sizeof(buf));
        if (k > 0)
            got += (int)k;
    }
}

void pr_ready_close(pr_ready *r)
{
    close(r->rfd);
    close(r->wfd);
}

int pr_wait_exited(curfew_proc *p, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    int status = 0;
    while (curfew_proc_exited(p, &status) != 1) {
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "child %d not reaped in %" PRId64 " ms",
                    (int)curfew_proc_pid(p), timeout_ms);
        th_sleep_ms(2);
    }
    return status;
}

int pr_children(int *zombies)
{
    DIR *d = opendir("/proc");
    if (!d)
        th_fail(__FILE__, __LINE__, "opendir /proc: %s", strerror(errno));
    int all = 0, z = 0;
    long me = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%.255s/stat", e->d_name);
        char *text = pr_read_file(path, NULL);
        if (!text)
            continue; /* gone meanwhile */
        /* "pid (comm) S ppid ...": comm may hold anything, so look
         * after its last parenthesis. */
        char *close_paren = strrchr(text, ')');
        char state = 0;
        long ppid = 0;
        if (close_paren &&
            sscanf(close_paren + 1, " %c %ld", &state, &ppid) == 2 &&
            ppid == me) {
            all++;
            if (state == 'Z')
                z++;
        }
        free(text);
    }
    closedir(d);
    if (zombies)
        *zombies = z;
    return all;
}

void pr_msgs_init(pr_msgs *m)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->mu, NULL);
}

static void in_order(pr_msgs *m, uint32_t *next, const void *data, size_t len)
{
    if (len < 4) {
        m->disorder++;
        return;
    }
    uint32_t seq = pr_get32(data);
    if (seq != *next)
        m->disorder++;
    *next = seq + 1;
}

void pr_on_message(curfew_proc *p, uint32_t type, const void *data, size_t len,
                   void *arg)
{
    pr_msgs *m = arg;
    pthread_mutex_lock(&m->mu);
    m->bytes += len;
    switch (type) {
    case PR_MSG_STAMP:
        if (len == 16 && m->nstamps < PR_MAX_KIDS) {
            m->stamp_pid[m->nstamps] = curfew_proc_pid(p);
            m->stamp_ns[m->nstamps] = (int64_t)pr_get64(data);
            m->stamp_budget[m->nstamps] =
                (int64_t)pr_get64((const unsigned char *)data + 8);
            m->nstamps++;
        }
        break;
    case PR_MSG_FLOOD:
        in_order(m, &m->flood, data, len);
        break;
    case PR_MSG_EARLY:
        in_order(m, &m->early, data, len);
        break;
    case PR_MSG_PONG:
        in_order(m, &m->pong, data, len);
        break;
    default:
        m->disorder++;
        break;
    }
    pthread_mutex_unlock(&m->mu);
}

void pr_on_exit(curfew_proc *p, int status, void *arg)
{
    pr_msgs *m = arg;
    pthread_mutex_lock(&m->mu);
    if (m->nexits < PR_MAX_KIDS) {
        m->exit_pid[m->nexits] = curfew_proc_pid(p);
        m->exit_status[m->nexits] = status;
        m->nexits++;
    }
    pthread_mutex_unlock(&m->mu);
}

curfew_proc_options pr_opts(const char *label, pr_msgs *m)
{
    curfew_proc_options o = {0};
    o.name = label;
    o.on_message = pr_on_message;
    o.on_exit = pr_on_exit;
    o.arg = m;
    return o;
}

/* ---- JSON -----------------------------------------------------------------
 */

curfew__jval *pr_parse_text(const char *text, size_t len)
{
    curfew__jval *v = NULL;
    char err[160];
    int r = curfew__json_parse(text, len, &v, err, sizeof(err));
    if (r != 0)
        th_fail(__FILE__, __LINE__, "JSON: %s (%s): %.*s", err,
                curfew_strerror(r), (int)(len > 400 ? 400 : len), text);
    return v;
}

curfew__jval *pr_parse_file(const char *path)
{
    size_t len;
    char *text = pr_read_file(path, &len);
    if (!text)
        th_fail(__FILE__, __LINE__, "cannot read %s: %s", path,
                strerror(errno));
    curfew__jval *v = pr_parse_text(text, len);
    free(text);
    return v;
}

const curfew__jval *pr_jget(const curfew__jval *o, const char *key,
                            curfew__jtype t)
{
    const curfew__jval *v = curfew__json_get(o, key);
    if (!v)
        th_fail(__FILE__, __LINE__, "JSON: no key \"%s\"", key);
    if (v->type != t)
        th_fail(__FILE__, __LINE__, "JSON: \"%s\" has type %d, not %d", key,
                (int)v->type, (int)t);
    return v;
}

const char *pr_jstr(const curfew__jval *o, const char *key)
{
    return pr_jget(o, key, CURFEW__J_STR)->str;
}

int64_t pr_jint(const curfew__jval *o, const char *key)
{
    const curfew__jval *v = pr_jget(o, key, CURFEW__J_NUM);
    if (!v->is_int)
        th_fail(__FILE__, __LINE__, "JSON: \"%s\" is not an integer", key);
    return v->i;
}

const curfew__jval *pr_phase(const curfew__jval *rec, const char *name)
{
    const curfew__jval *phases = pr_jget(rec, "phases", CURFEW__J_ARR);
    for (size_t i = 0; i < phases->n; i++) {
        const char *s =
            curfew__json_str(curfew__json_get(&phases->items[i], "name"));
        if (s && strcmp(s, name) == 0)
            return &phases->items[i];
    }
    th_fail(__FILE__, __LINE__, "the record has no phase \"%s\"", name);
}

int64_t pr_phase_ms(const curfew__jval *rec, const char *name)
{
    const curfew__jval *ph = pr_phase(rec, name);
    return pr_jint(ph, "end_ms") - pr_jint(ph, "start_ms");
}

const curfew__jval *pr_blocker(const curfew__jval *rec, const char *name)
{
    const curfew__jval *phases = pr_jget(rec, "phases", CURFEW__J_ARR);
    for (size_t i = 0; i < phases->n; i++) {
        const curfew__jval *bl =
            curfew__json_get(&phases->items[i], "blockers");
        if (!bl || bl->type != CURFEW__J_ARR)
            continue;
        for (size_t j = 0; j < bl->n; j++) {
            const char *s =
                curfew__json_str(curfew__json_get(&bl->items[j], "name"));
            if (s && strcmp(s, name) == 0)
                return &bl->items[j];
        }
    }
    return NULL;
}

void pr_child_name(char *out, size_t size, curfew_proc *p, const char *label)
{
    snprintf(out, size, "child %ld (%s)", (long)curfew_proc_pid(p), label);
}

void pr_put32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

uint32_t pr_get32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           b[3];
}

void pr_put64(unsigned char *b, uint64_t v)
{
    pr_put32(b, (uint32_t)(v >> 32));
    pr_put32(b + 4, (uint32_t)v);
}

uint64_t pr_get64(const unsigned char *b)
{
    return (uint64_t)pr_get32(b) << 32 | pr_get32(b + 4);
}
