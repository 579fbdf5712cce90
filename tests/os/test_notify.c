/* Tests for the service-manager notify protocol: CONTRACT.md S2 (and C6).
 * The test binds a SOCK_DGRAM socket, as systemd does, puts its address in
 * NOTIFY_SOCKET for a child (`--child notify_kid`) and records every
 * datagram with the time it arrived.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "os_util.h"

#include <curfew.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the child -------------------------------------------------------- */

typedef struct finisher {
    curfew_blocker b[16];
    int n;
    int first_ms, every_ms;
} finisher;

static void *finish_main(void *arg)
{
    finisher *f = arg;
    th_sleep_ms(f->first_ms);
    for (int i = 0; i < f->n; i++) {
        if (i)
            th_sleep_ms(f->every_ms);
        curfew_blocker_done(f->b[i]);
    }
    return NULL;
}

/* key=value: dir (stderr to dir/stderr), interval, extend (ms), begin
 * (ms before curfew_begin), mode=seq|stuck.
 * seq:   drain waits for slow-a (done at 300 ms) and slow-b (900 ms).
 * stuck: drain waits for stuck (never done; the drain's crash_after_ms of
 *        3000 with CURFEW_TIMEOUT_CONTINUE ends it) and fast-1..fast-8,
 *        done one every 60 ms. */
CHILD(notify_kid)
{
    int interval = 50, extend = 1000, begin_ms = 0;
    const char *mode = "seq";
    for (int i = 0; i < argc; i++) {
        char *v = strchr(argv[i], '=');
        if (!v)
            return 2;
        *v++ = '\0';
        if (strcmp(argv[i], "dir") == 0) {
            char p[OS_PATH];
            os_path(p, sizeof(p), v, "stderr");
            os_redirect_stderr(p);
        } else if (strcmp(argv[i], "interval") == 0)
            interval = atoi(v);
        else if (strcmp(argv[i], "extend") == 0)
            extend = atoi(v);
        else if (strcmp(argv[i], "begin") == 0)
            begin_ms = atoi(v);
        else if (strcmp(argv[i], "mode") == 0)
            mode = v;
        else
            return 2;
    }
    static const curfew_phase_config phases[] = {
        {"stop-accepting", 0, 0}, {"drain", 0, 3000}, {"persist", 0, 0}};
    curfew_config cfg = {0};
    cfg.phases = phases;
    cfg.phase_count = 3;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 10;
    curfew_notify_options o = {interval, extend};
    int rc = curfew_notify_attach_opts(cf, &o);
    if (rc != 0) {
        fprintf(stderr, "attach: %s\n", curfew_strerror(rc));
        return 11;
    }
    static finisher fin;
    curfew_barrier *drain = curfew_phase(cf, "drain");
    if (strcmp(mode, "seq") == 0) {
        curfew_add_blocker(drain, "slow-a", NULL, NULL, &fin.b[0]);
        curfew_add_blocker(drain, "slow-b", NULL, NULL, &fin.b[1]);
        fin.n = 2;
        fin.first_ms = 300;
        fin.every_ms = 600;
    } else {
        curfew_add_blocker(drain, "stuck", NULL, NULL, NULL);
        for (int i = 0; i < 8; i++) {
            char name[32];
            snprintf(name, sizeof(name), "fast-%d", i + 1);
            curfew_add_blocker(drain, name, NULL, NULL, &fin.b[i]);
        }
        fin.n = 8;
        fin.first_ms = 60;
        fin.every_ms = 60;
    }
    th_sleep_ms(begin_ms);
    curfew_begin(cf);
    pthread_t t;
    if (pthread_create(&t, NULL, finish_main, &fin) != 0)
        return 12;
    if (curfew_run(cf) != 0)
        return 13;
    pthread_join(t, NULL);
    return curfew_destroy(cf) == 0 ? 0 : 14;
}

/* ---- the service manager's side ------------------------------------------ */

typedef struct dgram {
    int64_t t_ms;
    char text[768];
} dgram;

typedef struct listener {
    int fd;
    char env[OS_PATH + 8]; /* the NOTIFY_SOCKET value */
    dgram got[512];
    int n;
} listener;

/* Binds a datagram socket: at dir/notify.sock, or an abstract one. */
static void listen_on(listener *l, const char *dir, int abstract)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
        snprintf(l->env, sizeof(l->env), "@curfew-test-%d-%lld", (int)getpid(),
                 (long long)th_now_ms());
        size_t n = strlen(l->env);
        memcpy(sa.sun_path + 1, l->env + 1, n - 1);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        os_path(l->env, sizeof(l->env), dir, "notify.sock");
        CHECK(strlen(l->env) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, l->env);
        len = (socklen_t)sizeof(sa);
    }
    l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(l->fd >= 0);
    CHECK(bind(l->fd, (struct sockaddr *)&sa, len) == 0);
    l->n = 0;
    CHECK(setenv("NOTIFY_SOCKET", l->env, 1) == 0);
}

/* Takes every datagram waiting, up to wait_ms for the first. */
static void take(listener *l, int wait_ms)
{
    struct pollfd p = {l->fd, POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0)
        return;
    for (;;) {
        char buf[1024];
        ssize_t n = recv(l->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        if (n < 0)
            return;
        CHECK(l->n < 512);
        dgram *d = &l->got[l->n++];
        d->t_ms = th_now_ms();
        buf[n] = '\0';
        size_t k =
            (size_t)n < sizeof(d->text) ? (size_t)n : sizeof(d->text) - 1;
        memcpy(d->text, buf, k);
        d->text[k] = '\0';
    }
}

/* Records datagrams until the child exits; returns its wait status. */
static int record_child(listener *l, pid_t pid, int64_t timeout_ms)
{
    int64_t end = th_now_ms() + timeout_ms;
    for (;;) {
        take(l, 10);
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            take(l, 50);
            return status;
        }
        if (th_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            th_fail(__FILE__, __LINE__, "child did not exit");
        }
    }
}

static void dump(const listener *l, int64_t t0)
{
    for (int i = 0; i < l->n; i++)
        fprintf(stderr, "  +%5lld ms  %s\n", (long long)(l->got[i].t_ms - t0),
                l->got[i].text);
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void expect_exit0(int status, const char *dir)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char p[OS_PATH];
        os_path(p, sizeof(p), dir, "stderr");
        char *e = os_read_file(p);
        th_fail(__FILE__, __LINE__, "child status %#x; stderr:\n%s", status,
                e ? e : "");
    }
}

/* The messages of a shutdown with two blockers finishing in turn. */
static void check_sequence(listener *l, int64_t t_begin)
{
    CHECK(l->n >= 4);
    /* C6: nothing before the shutdown began; STOPPING=1 first. */
    CHECK(l->got[0].t_ms >= t_begin);
    CHECK_STR(l->got[0].text, "STOPPING=1");
    int saw_a = -1, saw_b_only = -1, extends = 0;
    for (int i = 1; i < l->n; i++) {
        const char *s = l->got[i].text;
        CHECK(starts(s, "STATUS=") || starts(s, "EXTEND_TIMEOUT_USEC="));
        CHECK(strcmp(s, "STOPPING=1") != 0); /* once */
        if (starts(s, "EXTEND_TIMEOUT_USEC=")) {
            CHECK_STR(s, "EXTEND_TIMEOUT_USEC=1000000");
            extends++;
        }
        if (strstr(s, "STATUS=stopping: drain; waiting for drain: slow-a, "
                      "slow-b") == s &&
            saw_a < 0)
            saw_a = i;
        if (starts(s, "STATUS=stopping: drain; waiting for drain: slow-b") &&
            !strstr(s, "slow-a"))
            saw_b_only = i;
        if (i > 1 && starts(s, "STATUS="))
            CHECK(strcmp(s, l->got[i - 1].text) != 0);
    }
    CHECK(saw_a > 0);
    CHECK(saw_b_only > saw_a); /* as the blockers finished */
    CHECK(extends >= 1);       /* slow-a's finish was progress */
    CHECK(
        starts(l->got[l->n - 1].text, "STATUS=stopped: shutdown complete in "));
}

/* S2: STOPPING=1 first, then STATUS= lines as the pending blockers change,
 * EXTEND_TIMEOUT_USEC= after progress, a last status at the end; nothing
 * before the shutdown began (C6). A path socket. */
TEST(notify_sequence_path)
{
    char dir[OS_PATH], dir_arg[OS_PATH + 8];
    os_tmpdir(dir, sizeof(dir));
    snprintf(dir_arg, sizeof(dir_arg), "dir=%s", dir);
    listener *l = calloc(1, sizeof(*l));
    listen_on(l, dir, 0);
    int64_t t0 = th_now_ms();
    pid_t pid =
        th_spawn_child("notify_kid", dir_arg, "mode=seq", "begin=300",
                       "interval=50", "extend=1000", (const char *)NULL);
    int st = record_child(l, pid, 30000);
    dump(l, t0);
    expect_exit0(st, dir);
    check_sequence(l, t0 + 250);
    close(l->fd);
    free(l);
    os_done(dir);
}

/* S2: the same through an abstract socket ("@name"). */
TEST(notify_sequence_abstract)
{
    char dir[OS_PATH], dir_arg[OS_PATH + 8];
    os_tmpdir(dir, sizeof(dir));
    snprintf(dir_arg, sizeof(dir_arg), "dir=%s", dir);
    listener *l = calloc(1, sizeof(*l));
    listen_on(l, dir, 1);
    CHECK(l->env[0] == '@');
    int64_t t0 = th_now_ms();
    pid_t pid =
        th_spawn_child("notify_kid", dir_arg, "mode=seq", "begin=300",
                       "interval=50", "extend=1000", (const char *)NULL);
    int st = record_child(l, pid, 30000);
    dump(l, t0);
    expect_exit0(st, dir);
    check_sequence(l, t0 + 250);
    close(l->fd);
    free(l);
    os_done(dir);
}

/* S2: extensions come while blockers keep finishing and stop when only a
 * blocker that never finishes is left: a stuck shutdown gets nothing, so
 * the service manager's timeout can kill it. */
TEST(notify_stuck_stops_extending)
{
    char dir[OS_PATH], dir_arg[OS_PATH + 8];
    os_tmpdir(dir, sizeof(dir));
    snprintf(dir_arg, sizeof(dir_arg), "dir=%s", dir);
    listener *l = calloc(1, sizeof(*l));
    listen_on(l, dir, 0);
    int64_t t0 = th_now_ms();
    pid_t pid =
        th_spawn_child("notify_kid", dir_arg, "mode=stuck", "interval=50",
                       "extend=1000", (const char *)NULL);
    int st = record_child(l, pid, 30000);
    dump(l, t0);
    expect_exit0(st, dir);

    CHECK_STR(l->got[0].text, "STOPPING=1");
    /* stuck_at: the first status naming only the stuck blocker; moved_at:
     * the first status after it that does not name it (the watchdog ended
     * the drain). */
    int stuck_at = -1, moved_at = -1, before = 0;
    for (int i = 0; i < l->n; i++) {
        const char *s = l->got[i].text;
        if (stuck_at < 0) {
            if (starts(s, "EXTEND_TIMEOUT_USEC="))
                before++;
            if (starts(s, "STATUS=stopping: drain; waiting for drain: stuck") &&
                !strstr(s, "fast-"))
                stuck_at = i;
        } else if (moved_at < 0 && starts(s, "STATUS=") &&
                   !strstr(s, "stuck")) {
            moved_at = i;
        }
    }
    CHECK(stuck_at > 0);
    CHECK(moved_at > stuck_at);
    CHECK(before >= 2); /* eight blockers finished over ~500 ms */
    int64_t quiet_from = l->got[stuck_at].t_ms + 2 * 50 + 150;
    int64_t quiet_to = l->got[moved_at].t_ms;
    /* The drain's 3000 ms timeout: many intervals without a message. */
    CHECK(quiet_to - quiet_from > 1000);
    for (int i = stuck_at + 1; i < moved_at; i++)
        if (l->got[i].t_ms > quiet_from)
            th_fail(__FILE__, __LINE__,
                    "sent while stuck, %lld ms after the last progress: %s",
                    (long long)(l->got[i].t_ms - l->got[stuck_at].t_ms),
                    l->got[i].text);
    /* After the timeout the shutdown moves on to its end. */
    CHECK(starts(l->got[l->n - 1].text, "STATUS=stopped: "));
    close(l->fd);
    free(l);
    os_done(dir);
}

/* ---- in this process ------------------------------------------------------
 */

/* S2: attach refuses what it cannot use. */
TEST(notify_attach_errors)
{
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    unsetenv("NOTIFY_SOCKET");
    CHECK_EQ(curfew_notify_attach(cf), -ENOENT);
    CHECK_EQ(curfew_notify_send("READY=1"), -ENOENT);
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK_EQ(curfew_notify_attach(cf), -ENOENT);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    CHECK_EQ(curfew_notify_attach(cf), -EINVAL);
    setenv("NOTIFY_SOCKET", "@", 1);
    CHECK_EQ(curfew_notify_attach(cf), -EINVAL);
    char longp[200];
    memset(longp, 'x', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    CHECK_EQ(curfew_notify_attach(cf), -EINVAL);
    CHECK_EQ(curfew_notify_attach(NULL), -EINVAL);
    setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
    curfew_notify_options bad = {-1, 0};
    CHECK_EQ(curfew_notify_attach_opts(cf, &bad), -EINVAL);
    curfew_notify_options bad2 = {500, 100};
    CHECK_EQ(curfew_notify_attach_opts(cf, &bad2), -EINVAL);
    CHECK_EQ(curfew_notify_send(NULL), -EINVAL);
    CHECK_EQ(curfew_notify_send(""), -EINVAL);
    /* No listener there: sending fails, attaching does not. */
    CHECK(curfew_notify_send("READY=1") < 0);
    CHECK_EQ(curfew_notify_attach(cf), 0);
    CHECK_EQ(curfew_notify_attach(cf), -EALREADY);
    CHECK_EQ(curfew_destroy(cf), 0);

    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_notify_attach(cf), -EBUSY);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S2: curfew_notify_send() sends one datagram (READY=1 at start-up). */
TEST(notify_send_ready)
{
    char dir[OS_PATH];
    os_tmpdir(dir, sizeof(dir));
    listener *l = calloc(1, sizeof(*l));
    listen_on(l, dir, 0);
    CHECK_EQ(curfew_notify_send("READY=1"), 0);
    CHECK_EQ(curfew_notify_send("STATUS=serving"), 0);
    take(l, 1000);
    CHECK_EQ(l->n, 2);
    CHECK_STR(l->got[0].text, "READY=1");
    CHECK_STR(l->got[1].text, "STATUS=serving");
    close(l->fd);
    free(l);
    os_done(dir);
}

/* S2, C6: attached and idle, nothing is sent and no thread runs; the
 * notify thread lives from the first dispatch to the end of the shutdown. */
TEST(notify_idle_c6)
{
    char dir[OS_PATH];
    os_tmpdir(dir, sizeof(dir));
    listener *l = calloc(1, sizeof(*l));
    listen_on(l, dir, 0);
    int t0 = os_count_threads();
    curfew *cf;
    curfew_blocker b;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "drain"), "job", NULL, NULL, &b),
        0);
    curfew_notify_options o = {20, 200};
    CHECK_EQ(curfew_notify_attach_opts(cf, &o), 0);
    take(l, 200);
    CHECK_EQ(l->n, 0);
    CHECK_EQ(os_wait_threads(t0, 10000), t0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(os_count_threads(), t0 + 2); /* the watchdog and the notifier */
    take(l, 1000);
    CHECK(l->n >= 1);
    CHECK_STR(l->got[0].text, "STOPPING=1");
    CHECK_EQ(curfew_blocker_done(b), 0);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK_EQ(os_wait_threads(t0 + 1, 10000), t0 + 1); /* joined at completion */
    take(l, 200);
    CHECK(starts(l->got[l->n - 1].text, "STATUS=stopped: "));
    CHECK_EQ(curfew_destroy(cf), 0);
    close(l->fd);
    free(l);
    os_done(dir);
}
