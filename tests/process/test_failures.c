/* Process trees when children fail (P4, A1): a child that ignores Shutdown
 * is force-killed and its blocker times out; a child that crashes at any
 * step of the handshake ends its blocker with an error naming the exit
 * status or signal; garbage on the control channel is a crash; the parent
 * never hangs and leaves no zombie.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "pr_util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* A child that speaks no protocol: it writes raw bytes on its channel
 * without attaching, then waits to be killed. */
CHILD(pr_garbage)
{
    (void)argc;
    (void)argv;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
    const char *v = getenv(CURFEW_CHANNEL_FD_ENV);
    if (!v)
        return 40;
    static const char junk[] = "\xff\xff\xff\xff this is not a frame \x01\x02";
    ssize_t w = write(atoi(v), junk, sizeof(junk) - 1);
    (void)w;
    th_sleep_ms(30000);
    return 41;
}

static curfew_proc *spawn_helper(curfew *cf, const curfew_proc_options *o,
                                 const char *helper)
{
    char *argv[] = {"/proc/self/exe", "--child", (char *)helper, NULL};
    curfew_proc *p = NULL;
    int r = curfew_proc_spawn(cf, argv, o, &p);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew_proc_spawn: %s",
                curfew_strerror(r));
    return p;
}

/* Runs the parent's shutdown; returns how long curfew_run took. */
static int64_t run(curfew *cf)
{
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    return th_now_ms() - t0;
}

static void no_zombie(void)
{
    int z;
    int n = pr_children(&z);
    if (n || z)
        th_fail(__FILE__, __LINE__, "%d children left, %d of them zombies", n,
                z);
}

/* P4: a child that never answers Shutdown is SIGKILLed after
 * kill_after_ms; its blocker's result is "timeout"; it is reaped. */
TEST(pr_ignored_shutdown_killed)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    /* Should the kill timer not fire, the parent's own watchdog ends the
     * wait after 8 s (CONTINUE) and the checks below say so. */
    static const char *const names[] = {
        "stop-accepting", "drain",   "children", "persist",
        "telemetry",      "threads", "final"};
    curfew_phase_config phases[7];
    for (int i = 0; i < 7; i++) {
        phases[i].name = names[i];
        phases[i].warn_after_ms = 0;
        phases[i].crash_after_ms = i == 2 ? 8000 : 0;
    }
    curfew_config cfg = {0};
    cfg.phases = phases;
    cfg.phase_count = 7;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    curfew *cf = pr_parent(dir, &cfg, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("deaf", &m);
    o.kill_after_ms = 500;
    curfew_proc *p = spawn_helper(cf, &o, "pr_deaf");
    int64_t took = run(cf);
    curfew__jval *r = pr_parse_file(rec);
    int64_t ms = pr_phase_ms(r, "children");
    printf("force-killed: curfew_run %" PRId64 " ms, \"children\" %" PRId64
           " ms\n",
           took, ms);
    CHECK(ms >= 490);
    CHECK(ms < 3000);
    char name[64];
    pr_child_name(name, sizeof(name), p, "deaf");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "timeout");
    int st = pr_wait_exited(p, 5000);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(WTERMSIG(st), SIGKILL);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nexits, 1);
    pthread_mutex_unlock(&m.mu);
    no_zombie();
    CHECK_EQ(curfew_proc_free(p), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

/* P4: a curfew child whose dispatching thread is stuck in a trigger never
 * finishes its phase, whatever its watchdog does (CONTINUE here): killed
 * at kill_after_ms, result "timeout". */
TEST(pr_stuck_child_killed)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("stuck", &m);
    o.kill_after_ms = 500;
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p =
        pr_spawn(cf, &o, ready.arg, "stuck=drain", "timeout=continue", NULL);
    pr_ready_wait(&ready, 1, 20000);
    run(cf);
    curfew__jval *r = pr_parse_file(rec);
    int64_t ms = pr_phase_ms(r, "children");
    CHECK(ms >= 490);
    CHECK(ms < 3000);
    char name[64];
    pr_child_name(name, sizeof(name), p, "stuck");
    CHECK_STR(pr_jstr(pr_blocker(r, name), "result"), "timeout");
    int st = pr_wait_exited(p, 5000);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(WTERMSIG(st), SIGKILL);
    no_zombie();
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* One crash case: the child runs with args; before_shutdown says the
 * crash comes before Shutdown (the test waits for it first). The blocker
 * must end with result (and, for "error", a text containing what); the
 * wait status must satisfy the signal or exit code given. */
static void crash_case(const char *label, int before_shutdown,
                       const char *result, const char *what, int sig, int code,
                       const char *a1, const char *a2, const char *a3)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts(label, &m);
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p;
    if (before_shutdown) {
        p = pr_spawn(cf, &o, a1, a2, a3, NULL);
        pr_wait_exited(p, 20000);
    } else {
        /* Attached before the shutdown begins: the time measured below is
         * not the child's start (seconds for a sanitized child on a loaded
         * machine). */
        p = pr_spawn(cf, &o, ready.arg, a1, a2, a3, NULL);
        pr_ready_wait(&ready, 1, 20000);
    }
    int64_t took = run(cf);
    /* The parent never waits for the force-kill timer (5000 ms) on a
     * child that is gone. */
    printf("%s: curfew_run took %" PRId64 " ms\n", label, took);
    CHECK(took < 4000);
    int st = pr_wait_exited(p, 5000);
    if (sig) {
        CHECK(WIFSIGNALED(st));
        CHECK_EQ(WTERMSIG(st), sig);
    } else {
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), code);
    }
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, label);
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), result);
    if (what) {
        const char *err = pr_jstr(b, "error");
        printf("%s: \"%s\"\n", label, err);
        if (!strstr(err, what))
            th_fail(__FILE__, __LINE__, "\"%s\" does not name \"%s\"", err,
                    what);
    }
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nexits, 1);
    CHECK_EQ(m.exit_status[0], st);
    pthread_mutex_unlock(&m.mu);
    no_zombie();
    CHECK_EQ(curfew_proc_free(p), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* P4: crashes before Shutdown: right after attaching (SIGSEGV), and in
 * the channel's greeting (the hello and the control actor's creation). */
TEST(pr_crash_after_attach)
{
    crash_case("segv", 1, "error", "signal 11", SIGSEGV, 0, "crash=attach:segv",
               NULL, NULL);
}

/* P4: in the greeting, as the parent's hello arrives (SIGKILL). */
TEST(pr_crash_at_hello)
{
    crash_case("hello", 1, "error", "signal 9", SIGKILL, 0,
               "step=hello-received", NULL, NULL);
}

/* P4: as the control actor's creation arrives (SIGKILL). */
TEST(pr_crash_at_control_actor)
{
    crash_case("create", 1, "error", "signal 9", SIGKILL, 0,
               "step=create-received", NULL, NULL);
}

/* P4: crashes after Shutdown arrived: as its frame is read, at the
 * child's BEGIN (abort), when it first reports its status. */
TEST(pr_crash_at_shutdown_message)
{
    crash_case("shutdown", 0, "error", "signal 9", SIGKILL, 0,
               "step=msg-received", NULL, NULL);
}

/* P4: at the child's BEGIN, just after Shutdown (abort). */
TEST(pr_crash_at_begin)
{
    crash_case("begin", 0, "error", "signal 6", SIGABRT, 0, "crash=begin:abort",
               "sleep=drain:100", NULL);
}

/* P4, P5: as the child sends its first status (SIGKILL). Its status
 * goes up when its thread sees a blocker pending (at Shutdown, then every
 * 100 ms): "drain" lasts long enough (3000 ms) for that to happen even on
 * a loaded machine; with 300 ms it once did not, and the first message
 * was FinishShutdown (result "ok"). */
TEST(pr_crash_at_status)
{
    crash_case("status", 0, "error", "signal 9", SIGKILL, 0, "step=msg-sent",
               "sleep=drain:3000", NULL);
}

/* P4: an exit in the middle of its phases (a trigger in "persist" calls
 * _exit(3)): the exit status is named. */
TEST(pr_crash_in_phases)
{
    crash_case("middle", 0, "error", "status 3", 0, 3, "crash=middle:exit3",
               "sleep=drain:100", NULL);
}

/* P3/P4: a crash right after FinishShutdown (it went after "drain"; the
 * full teardown then dies in "persist") is after the child's shutdown
 * finished: the blocker is "ok" and the signal reaches on_exit. */
TEST(pr_crash_after_finish)
{
    crash_case("finish", 0, "ok", NULL, SIGSEGV, 0, "crash=finish:segv",
               "finish=drain", "fast=0");
}

/* A1, P4: garbage on the control channel from a child that never attached:
 * the parent treats it as crashed, kills it, and its blocker fails with
 * -EPROTO. */
TEST(pr_garbage_on_channel)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("garbage", &m);
    curfew_proc *p = spawn_helper(cf, &o, "pr_garbage");
    /* Killed at once, long before any shutdown or kill timer. */
    int st = pr_wait_exited(p, 10000);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(WTERMSIG(st), SIGKILL);
    int64_t took = run(cf);
    CHECK(took < 4000);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "garbage");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "error");
    CHECK_EQ(pr_jint(b, "code"), -EPROTO);
    printf("garbage: \"%s\"\n", pr_jstr(b, "error"));
    no_zombie();
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

/* A1, P4: the same from an attached child, after its greeting. */
TEST(pr_garbage_after_attach)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("garbage", &m);
    curfew_proc *p = pr_spawn(cf, &o, "garbage=1", NULL);
    int st = pr_wait_exited(p, 10000);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(WTERMSIG(st), SIGKILL);
    run(cf);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "garbage");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "error");
    CHECK_EQ(pr_jint(b, "code"), -EPROTO);
    no_zombie();
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

/* P4: a mixed shutdown (clean, crashed, deaf, force-killed, exiting before
 * Shutdown) leaves no zombie and no child behind, neither when the
 * shutdown completed nor after curfew_destroy(); and curfew_destroy() of a
 * parent whose children still run kills and reaps them. */
TEST(pr_no_zombies)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, NULL, 0);
    curfew_proc_options o = pr_opts("mixed", &m);
    o.kill_after_ms = 1200;
    curfew_proc *ps[6];
    ps[0] = pr_spawn(cf, &o, "sleep=drain:100", NULL);
    ps[1] = pr_spawn(cf, &o, "crash=begin:segv", NULL);
    ps[2] = spawn_helper(cf, &o, "pr_deaf");
    ps[3] = pr_spawn(cf, &o, "crash=attach:exit3", NULL);
    ps[4] = pr_spawn(cf, &o, "hang=drain:never", "timeout=continue", NULL);
    ps[5] = pr_spawn(cf, &o, "crash=middle:abort", NULL);
    run(cf);
    for (int i = 0; i < 6; i++)
        pr_wait_exited(ps[i], 5000);
    no_zombie();
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nexits, 6);
    pthread_mutex_unlock(&m.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    no_zombie();

    /* Destroyed before any shutdown: running children are killed and
     * reaped, not left behind. */
    cf = pr_parent(dir, NULL, NULL, 0);
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *q1 = pr_spawn(cf, &o, ready.arg, NULL);
    curfew_proc *q2 = spawn_helper(cf, &o, "pr_deaf");
    (void)q1;
    (void)q2;
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(pr_children(NULL), 2);
    CHECK_EQ(curfew_destroy(cf), 0);
    no_zombie();
    pr_ready_close(&ready);
    pr_done(dir);
}
