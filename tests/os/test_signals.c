/* Tests for the signal handlers: CONTRACT.md S1 (and C6 for the helper
 * thread). Signals go to a real child process (`--child sig_kid`) where
 * the process must go on or exit; the in-process cases check handler
 * bookkeeping.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "os_util.h"
#include "report/jsonr.h"

#include <curfew.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the child -------------------------------------------------------- */

static struct {
    int fd;
    int slow_ms;
    pthread_t slow_thread;
    int slow_started;
} K = {.fd = -1};

static void kid_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (K.fd < 0)
        return;
    if (ev->type == CURFEW_EV_BEGIN)
        os_put_byte(K.fd, 'B');
    /* Listeners (the helper thread's start) ran by the next event. */
    if (ev->type == CURFEW_EV_PHASE_BEGIN && strcmp(ev->phase, "drain") == 0)
        os_put_byte(K.fd, 'D');
}

static void *slow_main(void *arg)
{
    curfew_blocker *b = arg;
    th_sleep_ms(K.slow_ms);
    curfew_blocker_done(*b);
    return NULL;
}

static int slow_trigger(curfew_blocker self, void *arg)
{
    static curfew_blocker me;
    (void)arg;
    me = self;
    if (pthread_create(&K.slow_thread, NULL, slow_main, &me) != 0)
        return -EAGAIN;
    K.slow_started = 1;
    return CURFEW_PENDING;
}

/* key=value arguments: dir (stderr goes to dir/stderr), fd (a pipe for
 * R ready, B begun, D drain began, C complete; S begun, with nodispatch),
 * record, quit=1, state (SIGQUIT report file), hang=1 (a drain blocker
 * that never finishes), slow=MS (a drain blocker a thread finishes after
 * MS), nodispatch=1. */
CHILD(sig_kid)
{
    const char *record = NULL, *state = NULL;
    int quit = 0, hang = 0, nodispatch = 0;
    for (int i = 0; i < argc; i++) {
        char *v = strchr(argv[i], '=');
        if (!v)
            return 2;
        *v++ = '\0';
        if (strcmp(argv[i], "dir") == 0) {
            char p[OS_PATH];
            os_path(p, sizeof(p), v, "stderr");
            os_redirect_stderr(p);
        } else if (strcmp(argv[i], "fd") == 0)
            K.fd = atoi(v);
        else if (strcmp(argv[i], "record") == 0)
            record = v;
        else if (strcmp(argv[i], "state") == 0)
            state = v;
        else if (strcmp(argv[i], "quit") == 0)
            quit = atoi(v);
        else if (strcmp(argv[i], "hang") == 0)
            hang = atoi(v);
        else if (strcmp(argv[i], "slow") == 0)
            K.slow_ms = atoi(v);
        else if (strcmp(argv[i], "nodispatch") == 0)
            nodispatch = atoi(v);
        else
            return 2;
    }
    curfew_config cfg = {0};
    cfg.record_path = record;
    cfg.process_name = "sig-kid";
    cfg.on_event = kid_event;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 10;
    if (hang)
        curfew_add_blocker(curfew_phase(cf, "drain"), "hang", NULL, NULL, NULL);
    if (K.slow_ms)
        curfew_add_blocker(curfew_phase(cf, "drain"), "slow", slow_trigger,
                           NULL, NULL);
    if (curfew_signals_install(cf, quit ? CURFEW_SIGNALS_QUIT : 0) != 0)
        return 11;
    if (state && curfew_signals_set_state_path(cf, state) != 0)
        return 12;
    os_put_byte(K.fd, 'R');
    if (nodispatch) {
        /* Never dispatches; says S once a signal has begun the shutdown
         * (C4: read without dispatching), so that the parent does not send
         * the next one while the first is still pending (two pending
         * SIGINTs are one). */
        int said = 0;
        for (int64_t end = th_now_ms() + 30000; th_now_ms() < end;) {
            if (!said && curfew_current_phase(cf) != NULL) {
                os_put_byte(K.fd, 'S');
                said = 1;
            }
            th_sleep_ms(5);
        }
        return 3;
    }
    if (curfew_run(cf) != 0)
        return 13;
    os_put_byte(K.fd, 'C');
    if (curfew_signals_uninstall(cf) != 0)
        return 14;
    if (K.slow_started)
        pthread_join(K.slow_thread, NULL);
    return curfew_destroy(cf) == 0 ? 0 : 15;
}

/* ---- the parent's side -------------------------------------------------- */

typedef struct kid {
    char dir[OS_PATH];
    char record[OS_PATH];
    char err[OS_PATH];
    int rd;
    pid_t pid;
} kid;

/* Starts sig_kid with the given extra arguments (at most four, NULL after
 * the last) and waits for its 'R'. */
static void kid_start(kid *k, const char *a1, const char *a2, const char *a3,
                      const char *a4)
{
    os_tmpdir(k->dir, sizeof(k->dir));
    os_path(k->record, sizeof(k->record), k->dir, "record.json");
    os_path(k->err, sizeof(k->err), k->dir, "stderr");
    int p[2];
    os_pipe(p);
    char dir_arg[OS_PATH + 8], fd_arg[32], rec_arg[OS_PATH + 16];
    snprintf(dir_arg, sizeof(dir_arg), "dir=%s", k->dir);
    snprintf(fd_arg, sizeof(fd_arg), "fd=%d", p[1]);
    snprintf(rec_arg, sizeof(rec_arg), "record=%s", k->record);
    k->pid = th_spawn_child("sig_kid", dir_arg, fd_arg, rec_arg, a1, a2, a3, a4,
                            (const char *)NULL);
    close(p[1]);
    k->rd = p[0];
    char c = os_read_byte(k->rd, 20000);
    if (c != 'R')
        th_fail(__FILE__, __LINE__, "child said %c, not R", c);
}

static void kid_expect(kid *k, char want)
{
    char c = os_read_byte(k->rd, 20000);
    if (c != want)
        th_fail(__FILE__, __LINE__, "child said %c, not %c", c, want);
}

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

/* 1 once the child's main thread is blocked in a system call other than
 * write() (/proc/PID/syscall starts with its number; "running" or -1 when
 * it is not in one), -1 if that file cannot be read. */
static int kid_blocked_elsewhere(kid *k)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/syscall", (int)k->pid);
    char *s = os_read_file(path);
    if (!s || !*s) {
        free(s);
        return -1;
    }
    char *end;
    long nr = strtol(s, &end, 10);
    int blocked = end != s && nr >= 0 && nr != SYS_write;
    free(s);
    return blocked;
}

/* Sends sig to the child. Under ThreadSanitizer it first lets the child
 * leave the write() that told us its state: the TSan runtimes of GCC 12
 * and clang 14 lose an asynchronous signal that arrives while the thread is
 * inside an intercepted write() (a twenty-line program without curfew,
 * which writes to a pipe and polls an eventfd its SIGINT handler writes,
 * loses one signal in about fifty when the parent signals right after
 * reading; none with a pause, none without TSan). A signal that arrives
 * anywhere else is delivered, also under TSan. A fixed pause is not
 * enough on a loaded machine: wait until the child's main thread blocks in
 * another system call (poll or sleep), 100 ms more if that cannot be
 * seen. */
static void kid_signal(kid *k, int sig)
{
    if (OS_TSAN) {
        int64_t end = th_now_ms() + 10000;
        int b;
        while ((b = kid_blocked_elsewhere(k)) == 0 && th_now_ms() < end)
            th_sleep_ms(1);
        if (b < 0)
            th_sleep_ms(100);
    }
    CHECK(kill(k->pid, sig) == 0);
}

static int kid_alive(kid *k)
{
    int status;
    return waitpid(k->pid, &status, WNOHANG) == 0;
}

static void kid_expect_exit(kid *k, int code)
{
    int st = th_wait_child(k->pid, 20000);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != code) {
        char *e = os_read_file(k->err);
        th_fail(__FILE__, __LINE__,
                "child: status %#x, wanted exit %d; stderr:\n%s", st, code,
                e ? e : "");
    }
}

static curfew__jval *parse(const char *text)
{
    curfew__jval *v;
    char err[128];
    if (curfew__json_parse(text, strlen(text), &v, err, sizeof(err)) != 0)
        th_fail(__FILE__, __LINE__, "bad JSON (%s): %s", err, text);
    return v;
}

static curfew__jval *parse_file(const char *path)
{
    char *s = os_read_file(path);
    if (!s)
        th_fail(__FILE__, __LINE__, "no file %s", path);
    curfew__jval *v = parse(s);
    free(s);
    return v;
}

static int jbool(const curfew__jval *o, const char *key)
{
    const curfew__jval *v = curfew__json_get(o, key);
    CHECK(v && v->type == CURFEW__J_BOOL);
    return v->boolean;
}

/* The result of blocker name in the record's phase. */
static const char *blocker_result(const curfew__jval *rec, const char *phase,
                                  const char *name)
{
    const curfew__jval *phases = curfew__json_get(rec, "phases");
    CHECK(phases && phases->type == CURFEW__J_ARR);
    for (size_t i = 0; i < phases->n; i++) {
        const curfew__jval *p = &phases->items[i];
        const char *pn = curfew__json_str(curfew__json_get(p, "name"));
        if (!pn || strcmp(pn, phase) != 0)
            continue;
        const curfew__jval *bl = curfew__json_get(p, "blockers");
        for (size_t j = 0; bl && j < bl->n; j++) {
            const char *bn =
                curfew__json_str(curfew__json_get(&bl->items[j], "name"));
            if (bn && strcmp(bn, name) == 0)
                return curfew__json_str(
                    curfew__json_get(&bl->items[j], "result"));
        }
    }
    return NULL;
}

/* S1: one SIGINT begins the shutdown, which then runs to its end. */
TEST(sigint_begins)
{
    kid k;
    kid_start(&k, "slow=200", NULL, NULL, NULL);
    kid_signal(&k, SIGINT);
    kid_expect(&k, 'B');
    kid_expect(&k, 'D');
    kid_expect(&k, 'C');
    kid_expect_exit(&k, 0);
    curfew__jval *rec = parse_file(k.record);
    CHECK_STR(curfew__json_str(curfew__json_get(rec, "type")), "curfew-record");
    CHECK_EQ(jbool(rec, "clean"), 1);
    CHECK_STR(blocker_result(rec, "drain", "slow"), "ok");
    curfew__json_free(rec);
    os_done(k.dir);
}

/* S1: a second SIGINT exits at once (status 130) after the helper thread
 * rewrote the record, which says why the shutdown did not finish. */
TEST(sigint_twice_exits)
{
    kid k;
    kid_start(&k, "hang=1", NULL, NULL, NULL);
    kid_signal(&k, SIGINT);
    kid_expect(&k, 'B');
    kid_expect(&k, 'D');
    int64_t t0 = th_now_ms();
    kid_signal(&k, SIGINT);
    kid_expect_exit(&k, CURFEW_SIGNALS_EXIT_CODE);
    CHECK(th_now_ms() - t0 < 5000); /* at once, not at a timeout */
    curfew__jval *rec = parse_file(k.record);
    CHECK_EQ(jbool(rec, "clean"), 0);
    const char *failure = curfew__json_str(curfew__json_get(rec, "failure"));
    CHECK(failure && strstr(failure, "second SIGINT"));
    CHECK_STR(blocker_result(rec, "drain", "hang"), "pending");
    curfew__json_free(rec);
    char *e = os_read_file(k.err);
    CHECK(e && strstr(e, "second SIGINT: exiting at once"));
    free(e);
    os_done(k.dir);
}

/* S1: a SIGINT while a shutdown begun by SIGTERM is in progress is a
 * second interruption too: it exits at once. */
TEST(sigint_after_sigterm_exits)
{
    kid k;
    kid_start(&k, "hang=1", NULL, NULL, NULL);
    kid_signal(&k, SIGTERM);
    kid_expect(&k, 'B');
    kid_expect(&k, 'D');
    kid_signal(&k, SIGINT);
    kid_expect_exit(&k, CURFEW_SIGNALS_EXIT_CODE);
    curfew__jval *rec = parse_file(k.record);
    CHECK_EQ(jbool(rec, "clean"), 0);
    curfew__json_free(rec);
    os_done(k.dir);
}

/* S1: a program that never dispatches still exits at the second SIGINT;
 * with no helper thread (C6: it starts at the first dispatch) the record
 * is not rewritten, as documented. */
TEST(sigint_twice_before_dispatch)
{
    kid k;
    kid_start(&k, "nodispatch=1", "hang=1", NULL, NULL);
    kid_signal(&k, SIGINT);
    kid_expect(&k, 'S');
    th_sleep_ms(100);
    CHECK(kid_alive(&k)); /* the first one only began the shutdown */
    kid_signal(&k, SIGINT);
    kid_expect_exit(&k, CURFEW_SIGNALS_EXIT_CODE);
    CHECK(access(k.record, F_OK) != 0);
    os_done(k.dir);
}

/* S1: SIGTERM begins the shutdown; a second SIGTERM does not cut it
 * short. */
TEST(sigterm_begins)
{
    kid k;
    kid_start(&k, "slow=300", NULL, NULL, NULL);
    kid_signal(&k, SIGTERM);
    kid_expect(&k, 'B');
    kid_expect(&k, 'D');
    kid_signal(&k, SIGTERM);
    kid_expect(&k, 'C');
    kid_expect_exit(&k, 0);
    curfew__jval *rec = parse_file(k.record);
    CHECK_EQ(jbool(rec, "clean"), 1);
    CHECK_STR(blocker_result(rec, "drain", "slow"), "ok");
    curfew__json_free(rec);
    os_done(k.dir);
}

/* S1: SIGQUIT (opt-in) writes a "curfew-state" report to the file set and
 * the program goes on: before the shutdown, and during it, naming the
 * blocker the shutdown waits for. */
TEST(sigquit_state_file)
{
    kid k;
    char dir0[OS_PATH], state[OS_PATH], st_arg[OS_PATH + 8];
    os_tmpdir(dir0, sizeof(dir0));
    os_path(state, sizeof(state), dir0, "state.json");
    snprintf(st_arg, sizeof(st_arg), "state=%s", state);
    kid_start(&k, "quit=1", st_arg, "slow=1500", NULL);

    kid_signal(&k, SIGQUIT);
    char *s = os_wait_file(state, "curfew-state", 10000);
    curfew__jval *r = parse(s);
    CHECK_STR(curfew__json_str(curfew__json_get(r, "type")), "curfew-state");
    CHECK_STR(curfew__json_str(curfew__json_get(r, "process")), "sig-kid");
    curfew__json_free(r);
    free(s);
    th_sleep_ms(50);
    CHECK(kid_alive(&k)); /* a report, not a stop */

    kid_signal(&k, SIGTERM);
    kid_expect(&k, 'B');
    kid_expect(&k, 'D');
    CHECK(unlink(state) == 0);
    kid_signal(&k, SIGQUIT);
    s = os_wait_file(state, "curfew-state", 10000);
    r = parse(s);
    CHECK_STR(curfew__json_str(curfew__json_get(r, "phase")), "drain");
    CHECK(strstr(s, "\"slow\""));
    curfew__json_free(r);
    free(s);
    kid_expect(&k, 'C');
    kid_expect_exit(&k, 0);
    os_done(k.dir);
    os_done(dir0);
}

/* S1: without a path the state report goes to standard error. */
TEST(sigquit_stderr)
{
    kid k;
    kid_start(&k, "quit=1", NULL, NULL, NULL);
    kid_signal(&k, SIGQUIT);
    free(os_wait_file(k.err, "\"curfew-state\"", 10000));
    CHECK(kid_alive(&k));
    kid_signal(&k, SIGTERM);
    kid_expect(&k, 'B');
    kid_expect(&k, 'D');
    kid_expect(&k, 'C');
    kid_expect_exit(&k, 0);
    os_done(k.dir);
}

/* ---- in this process ------------------------------------------------------
 */

static volatile sig_atomic_t got[3];

static void mine(int signo)
{
    got[signo == SIGTERM ? 0 : signo == SIGINT ? 1 : 2]++;
}

static void (*handler_of(int signo))(int)
{
    struct sigaction sa;
    CHECK(sigaction(signo, NULL, &sa) == 0);
    return sa.sa_handler;
}

/* S1: uninstall puts back the handlers that were there before. */
TEST(uninstall_restores)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = mine;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGTERM, &sa, NULL) == 0);
    CHECK(sigaction(SIGINT, &sa, NULL) == 0);
    CHECK(sigaction(SIGQUIT, &sa, NULL) == 0);

    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_signals_install(cf, CURFEW_SIGNALS_QUIT), 0);
    CHECK(handler_of(SIGTERM) != mine);
    CHECK(handler_of(SIGINT) != mine);
    CHECK(handler_of(SIGQUIT) != mine);
    CHECK_EQ(curfew_signals_uninstall(cf), 0);
    CHECK(handler_of(SIGTERM) == mine);
    CHECK(handler_of(SIGINT) == mine);
    CHECK(handler_of(SIGQUIT) == mine);

    /* Without CURFEW_SIGNALS_QUIT, SIGQUIT is left alone. */
    CHECK_EQ(curfew_signals_install(cf, 0), 0);
    CHECK(handler_of(SIGQUIT) == mine);
    CHECK(handler_of(SIGTERM) != mine);
    CHECK_EQ(curfew_signals_uninstall(cf), 0);

    raise(SIGTERM);
    raise(SIGINT);
    raise(SIGQUIT);
    CHECK_EQ(got[0], 1);
    CHECK_EQ(got[1], 1);
    CHECK_EQ(got[2], 1);
    CHECK(curfew_current_phase(cf) == NULL); /* curfew saw none of them */
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S1: a SIGTERM raised in the process begins the shutdown. */
TEST(sigterm_in_process)
{
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_signals_install(cf, 0), 0);
    CHECK(curfew_current_phase(cf) == NULL);
    raise(SIGTERM);
    CHECK(curfew_current_phase(cf) != NULL);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(curfew_signals_uninstall(cf), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S1: one coordinator at a time holds the signals; errors are reported. */
TEST(install_errors)
{
    curfew *a, *b;
    CHECK_EQ(curfew_create(&a, NULL), 0);
    CHECK_EQ(curfew_create(&b, NULL), 0);
    CHECK_EQ(curfew_signals_install(NULL, 0), -EINVAL);
    CHECK_EQ(curfew_signals_install(a, 0x80), -EINVAL);
    CHECK_EQ(curfew_signals_uninstall(NULL), -EINVAL);
    CHECK_EQ(curfew_signals_uninstall(a), -ENOENT);
    CHECK_EQ(curfew_signals_set_state_path(a, "x"), -ENOENT);
    CHECK_EQ(curfew_signals_install(a, 0), 0);
    CHECK_EQ(curfew_signals_install(a, 0), -EALREADY);
    CHECK_EQ(curfew_signals_install(b, 0), -EBUSY);
    CHECK_EQ(curfew_signals_uninstall(b), -ENOENT);
    CHECK_EQ(curfew_signals_set_state_path(b, "x"), -ENOENT);
    CHECK_EQ(curfew_signals_set_state_path(a, ""), -EINVAL);
    CHECK_EQ(curfew_signals_set_state_path(a, "/tmp/x"), 0);
    CHECK_EQ(curfew_signals_set_state_path(a, NULL), 0);
    CHECK_EQ(curfew_signals_uninstall(a), 0);
    CHECK_EQ(curfew_signals_uninstall(a), -ENOENT);
    CHECK_EQ(curfew_signals_install(b, 0), 0); /* free again */
    CHECK_EQ(curfew_signals_uninstall(b), 0);
    CHECK_EQ(curfew_signals_install(a, 0), 0); /* and again for a */
    CHECK_EQ(curfew_signals_uninstall(a), 0);
    CHECK_EQ(curfew_destroy(a), 0);
    CHECK_EQ(curfew_destroy(b), 0);
}

/* S1, C6: installing starts no thread; the helper starts at the first
 * dispatch after the shutdown began (with the watchdog), or at install
 * with CURFEW_SIGNALS_QUIT; uninstall stops it. */
TEST(helper_thread_c6)
{
    int t0 = os_count_threads();
    curfew *cf;
    curfew_blocker hang;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "hang", NULL, NULL,
                                &hang),
             0);
    CHECK_EQ(curfew_signals_install(cf, 0), 0);
    th_sleep_ms(20);
    CHECK_EQ(os_wait_threads(t0, 10000), t0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(os_count_threads(), t0 + 1); /* the watchdog */
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(os_count_threads(), t0 + 2); /* and the helper */
    CHECK_EQ(curfew_blocker_done(hang), 0);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK_EQ(curfew_signals_uninstall(cf), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(os_wait_threads(t0, 10000), t0);

    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_signals_install(cf, CURFEW_SIGNALS_QUIT), 0);
    CHECK_EQ(os_count_threads(), t0 + 1);
    CHECK_EQ(curfew_signals_uninstall(cf), 0);
    CHECK_EQ(os_wait_threads(t0, 10000), t0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S1: curfew_destroy() without uninstall still puts the handlers back, so
 * no handler is left pointing at a freed coordinator. */
TEST(destroy_uninstalls)
{
    int t0 = os_count_threads();
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_signals_install(cf, CURFEW_SIGNALS_QUIT), 0);
    CHECK(handler_of(SIGTERM) != SIG_DFL);
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK(handler_of(SIGTERM) == SIG_DFL);
    CHECK(handler_of(SIGINT) == SIG_DFL);
    CHECK(handler_of(SIGQUIT) == SIG_DFL);
    CHECK_EQ(os_wait_threads(t0, 10000), t0);
    /* The signals are free for the next coordinator. */
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_signals_install(cf, 0), 0);
    CHECK_EQ(curfew_signals_uninstall(cf), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}
