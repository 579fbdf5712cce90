/* Process trees, the good path: children started with a control channel
 * (P1), Shutdown to all at once and one blocker per child in the parent's
 * "children" phase (P2), FinishShutdown after every earlier message, fast
 * exit and full teardown (P3), adoption, and the program's own children
 * left alone.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "pr_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Starts n children whose shutdown takes ms each (a blocker in their
 * "drain" phase), all ready before the parent begins; returns the
 * parent's "children" phase duration from its record and checks every
 * child's blocker. */
static int64_t parallel(int n, int ms, int64_t bound_ms)
{
    char dir[PR_PATH], rec[PR_PATH], sleep_arg[32];
    pr_begin(dir, sizeof(dir), 100);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    pr_msgs m;
    pr_msgs_init(&m);
    pr_ready ready;
    pr_ready_open(&ready);
    snprintf(sleep_arg, sizeof(sleep_arg), "sleep=drain:%d", ms);
    curfew_proc *kids[PR_MAX_KIDS];
    char labels[PR_MAX_KIDS][16];
    int64_t t_spawn = th_now_ms();
    for (int i = 0; i < n; i++) {
        snprintf(labels[i], sizeof(labels[i]), "kid-%d", i);
        curfew_proc_options o = pr_opts(labels[i], &m);
        kids[i] = pr_spawn(cf, &o, ready.arg, sleep_arg, "stamp=1", NULL);
    }
    pr_ready_wait(&ready, n, 60000);
    int64_t t_ready = th_now_ms();

    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int64_t wall = th_now_ms() - t0;

    curfew__jval *r = pr_parse_file(rec);
    CHECK(curfew__json_get(r, "clean")->boolean);
    int64_t phase_ms = pr_phase_ms(r, "children");
    printf("%d children of %d ms each: started in %" PRId64
           " ms; \"children\" took %" PRId64 " ms, the whole shutdown %" PRId64
           " ms (the sum would be %d ms; bound %" PRId64 " ms)\n",
           n, ms, t_ready - t_spawn, phase_ms, wall, n * ms, bound_ms);
    /* P2: as long as the slowest child plus overhead, never the sum. */
    CHECK(phase_ms >= ms);
    CHECK(phase_ms < bound_ms);
    CHECK(bound_ms < (int64_t)n * ms);

    /* One blocker per child, named after it, all in "children" (P2). */
    const curfew__jval *bl =
        pr_jget(pr_phase(r, "children"), "blockers", CURFEW__J_ARR);
    CHECK_EQ(bl->n, n);
    int64_t start_min = INT64_MAX, start_max = INT64_MIN, end_min = INT64_MAX;
    for (int i = 0; i < n; i++) {
        char name[64];
        pr_child_name(name, sizeof(name), kids[i], labels[i]);
        const curfew__jval *b = pr_blocker(r, name);
        if (!b)
            th_fail(__FILE__, __LINE__, "no blocker \"%s\"", name);
        CHECK_STR(pr_jstr(b, "barrier"), "children");
        CHECK_STR(pr_jstr(b, "result"), "ok");
        int64_t s = pr_jint(b, "start_ms"), e = pr_jint(b, "end_ms");
        start_min = s < start_min ? s : start_min;
        start_max = s > start_max ? s : start_max;
        end_min = e < end_min ? e : end_min;
    }
    /* Shutdown went to all at once: every blocker started (its trigger
     * sent Shutdown) before any of them finished, and every child began
     * its own shutdown within a short window. The triggers run one after
     * another on the dispatching thread: under TSan on a loaded machine 64
     * of them took 70 ms, so the spread itself is only printed; one child
     * after another, the last would start after the others finished. */
    printf("the blockers started within %" PRId64
           " ms, the first finished at %" PRId64 " ms\n",
           start_max - start_min, end_min);
    CHECK(start_max < end_min);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nstamps, n);
    int64_t b_min = INT64_MAX, b_max = INT64_MIN;
    for (int i = 0; i < m.nstamps; i++) {
        b_min = m.stamp_ns[i] < b_min ? m.stamp_ns[i] : b_min;
        b_max = m.stamp_ns[i] > b_max ? m.stamp_ns[i] : b_max;
    }
    pthread_mutex_unlock(&m.mu);
    /* One after another, the last would begin (n - 1) * ms after the
     * first; at once, they begin within the time it takes to wake them. */
    printf("the children began their shutdowns within %" PRId64 " ms\n",
           (b_max - b_min) / 1000000);
    CHECK((b_max - b_min) / 1000000 < (int64_t)(n - 1) * ms / 2);

    /* Every child exits 0 after FinishShutdown (fast exit) and is
     * reaped: no zombie (P4). */
    for (int i = 0; i < n; i++) {
        int st = pr_wait_exited(kids[i], 20000);
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), 0);
    }
    int z;
    CHECK_EQ(pr_children(&z), 0);
    CHECK_EQ(z, 0);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nexits, n);
    CHECK_EQ(m.disorder, 0);
    pthread_mutex_unlock(&m.mu);
    for (int i = 0; i < n; i++)
        CHECK_EQ(curfew_proc_free(kids[i]), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_ready_close(&ready);
    pr_done(dir);
    return phase_ms;
}

/* What each child needs in its "drain", by build. The phase must take
 * less than three quarters of the sum (bound_ms = n * ms * 3 / 4): one
 * child after another would take the whole sum and more. Sanitized
 * children need far more CPU to wake, run their phases and exit, and 64
 * of them share two cores: on a two-core machine loaded by other test
 * runs (load 30-40), 16 x 200 ms took up to 600 ms (plain), 1470 (ASan),
 * 1780 (TSan), 16 x 500 ms 4500 ms (ASan), and 64 x 100 ms up to 450 ms
 * (plain), 1600 (ASan), 3480 (TSan), the children beginning their
 * shutdowns within 1050 (ASan) and 2400 ms (TSan) of each other. So the
 * children of sanitizer builds sleep longer, which keeps that overhead
 * well under the bound. */
static int per_build(int plain, int asan, int tsan)
{
    return pr_tsan() ? tsan : pr_asan() ? asan : plain;
}

/* P2: 16 children needing 200 ms each (sanitizers: 800): the phase takes
 * about that long plus the overhead, well under the 3200 ms sum
 * (12 800). */
TEST(pr_parallel_16)
{
    int ms = per_build(200, 800, 800);
    parallel(16, ms, 16 * ms * 3 / 4);
}

/* P2: 64 children needing 100 ms each (sanitizers: 200, TSan 300) shut
 * down well under the 6.4 s sum (12.8 s, 19.2 s). The plain build must
 * stay under 1.5 s, itself generous (up to 450 ms was measured at load
 * 30-40): "about 100 ms, not 6.4 s" is issue 5's point. */
TEST(pr_parallel_64)
{
    int ms = per_build(100, 200, 300);
    parallel(64, ms, pr_tsan() || pr_asan() ? 64 * ms * 3 / 4 : 1500);
}

/* P3: 10 000 numbered messages sent right before FinishShutdown all reach
 * on_message, in order, before the child's blocker finishes. */
static pr_msgs *flood_msgs;
static int64_t flood_at_end = -1;

static void flood_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_PHASE_END && strcmp(ev->phase, "children") == 0) {
        pthread_mutex_lock(&flood_msgs->mu);
        flood_at_end = flood_msgs->flood;
        pthread_mutex_unlock(&flood_msgs->mu);
    }
}

static void flood_case(const char *arg, uint32_t count)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 100);
    pr_msgs m;
    pr_msgs_init(&m);
    flood_msgs = &m;
    curfew_config cfg = {0};
    cfg.on_event = flood_event;
    curfew *cf = pr_parent(dir, &cfg, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("flood", &m);
    o.kill_after_ms = 20000;
    curfew_proc *p = pr_spawn(cf, &o, arg, NULL);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "flood");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "ok");
    /* At the end of "children" (so after the blocker finished) all were
     * there, in order. */
    printf("messages handled when \"children\" ended: %" PRId64 " of %u\n",
           flood_at_end, count);
    CHECK_EQ(flood_at_end, count);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.flood, count);
    CHECK_EQ(m.disorder, 0);
    pthread_mutex_unlock(&m.mu);
    int st = pr_wait_exited(p, 20000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

TEST(pr_flood_before_finish)
{
    /* P3 */
    flood_case("flood=10000:16", 10000);
}

/* P3 with 10 000 messages of 1 KiB: 10 MiB, far more than a socket
 * buffer holds, so the child's FinishShutdown waits behind them. */
TEST(pr_flood_large_before_finish)
{
    flood_case("flood=10000:1024", 10000);
}

/* P3: messages a child sends right after curfew_child_attach(), before its
 * channel finished its own greeting, are delivered like any other. */
TEST(pr_early_messages_delivered)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    flood_msgs = &m;
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("early", &m);
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p = pr_spawn(cf, &o, ready.arg, "early=5", NULL);
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pr_wait_exited(p, 20000);
    pthread_mutex_lock(&m.mu);
    printf("early messages delivered: %u of 5\n", m.early);
    CHECK_EQ(m.early, 5);
    CHECK_EQ(m.disorder, 0);
    pthread_mutex_unlock(&m.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* P1: the parent's messages reach the child's on_message and the child's
 * answers come back in order, before any shutdown. */
TEST(pr_messages_both_ways)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, NULL, 0);
    curfew_proc_options o = pr_opts("echo", &m);
    curfew_proc *p = pr_spawn(cf, &o, "echo=1", NULL);
    for (uint32_t i = 0; i < 100; i++) {
        unsigned char b[4];
        pr_put32(b, i);
        CHECK_EQ(curfew_proc_send(p, PR_MSG_PING, b, sizeof(b)), 0);
    }
    int64_t end = th_now_ms() + 20000;
    for (;;) {
        pthread_mutex_lock(&m.mu);
        uint32_t got = m.pong;
        pthread_mutex_unlock(&m.mu);
        if (got == 100)
            break;
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "%u of 100 answers", got);
        th_sleep_ms(5);
    }
    /* Control types belong to curfew. */
    CHECK_EQ(curfew_proc_send(p, 7, "x", 1), -EINVAL);
    CHECK_EQ(curfew_proc_send(p, PR_MSG_PING, NULL, 4), -EINVAL);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pr_wait_exited(p, 20000);
    /* Gone: nothing more can be sent. */
    CHECK_EQ(curfew_proc_send(p, PR_MSG_PING, "abcd", 4), -EPIPE);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.disorder, 0);
    pthread_mutex_unlock(&m.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_done(dir);
}

/* P3: without fast_exit the child sends FinishShutdown after finish_after
 * ("drain") and then runs its remaining phases (a 3000 ms blocker in
 * "persist") before it exits with its own status. The parent's blocker
 * finished at FinishShutdown, long before: its whole shutdown is shorter
 * than the child's "persist" alone (it took 1030 ms once under TSan on a
 * loaded machine, so that phase is not a mere second). */
TEST(pr_full_teardown)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("teardown", &m);
    /* The force-kill timer runs from Shutdown to the child's end, whatever
     * FinishShutdown said: far beyond the child's 3000 ms, and its exit
     * (LeakSanitizer's check included) on a loaded machine. */
    o.kill_after_ms = 20000;
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p = pr_spawn(cf, &o, ready.arg, "fast=0", "finish=drain",
                              "sleep=persist:3000", "rc=5", NULL);
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(curfew_begin(cf), 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_run(cf), 0);
    int64_t t_run = th_now_ms() - t0;
    /* The blocker finished while the child still ran. */
    int st = 0;
    CHECK_EQ(curfew_proc_exited(p, &st), 0);
    CHECK_EQ(curfew_proc_free(p), -EBUSY);
    st = pr_wait_exited(p, 20000);
    int64_t t_exit = th_now_ms() - t0;
    printf("parent shutdown %" PRId64 " ms, child exit at %" PRId64 " ms\n",
           t_run, t_exit);
    CHECK(t_run < 3000);
    CHECK(t_exit >= 2900);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 5);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "teardown");
    CHECK_STR(pr_jstr(pr_blocker(r, name), "result"), "ok");
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nexits, 1);
    CHECK_EQ(m.exit_status[0], st);
    pthread_mutex_unlock(&m.mu);
    CHECK_EQ(curfew_proc_free(p), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* P1: a child the program started itself, with its end of a socketpair
 * named in CURFEW_CHANNEL_FD, is adopted and shut down like a spawned
 * one. */
TEST(pr_adopt)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    int sv[2];
    CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    CHECK_EQ(fcntl(sv[1], F_SETFD, 0), 0); /* the child's end survives exec */
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof(char *));
    CHECK(env);
    char var[64];
    snprintf(var, sizeof(var), "%s=%d", CURFEW_CHANNEL_FD_ENV, sv[1]);
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CURFEW_", 7) != 0)
            env[j++] = environ[i];
    env[j++] = var;
    env[j] = NULL;
    char *argv[] = {"/proc/self/exe",  "--child", "pr_kid",
                    "sleep=drain:100", "stamp=1", NULL};
    pid_t pid;
    CHECK_EQ(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, env), 0);
    free(env);
    close(sv[1]);

    curfew_proc_options o = pr_opts("adopted", &m);
    curfew_proc *p = NULL;
    /* Not our child: refused. */
    CHECK_EQ(curfew_proc_adopt(cf, getppid(), sv[0], &o, &p), -ECHILD);
    CHECK(p == NULL);
    CHECK_EQ(curfew_proc_adopt(cf, pid, -1, &o, &p), -EINVAL);
    CHECK_EQ(curfew_proc_adopt(cf, pid, sv[0], &o, NULL), -EINVAL);
    CHECK_EQ(curfew_proc_adopt(cf, pid, sv[0], &o, &p), 0);
    CHECK(p != NULL);
    CHECK_EQ(curfew_proc_pid(p), pid);

    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "adopted");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "ok");
    CHECK(pr_jint(b, "end_ms") - pr_jint(b, "start_ms") >= 100);
    int st = pr_wait_exited(p, 20000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nstamps, 1); /* its messages reach us too */
    pthread_mutex_unlock(&m.mu);
    /* curfew reaped it: waitpid finds nothing. */
    CHECK_EQ(waitpid(pid, NULL, WNOHANG), -1);
    CHECK_EQ(errno, ECHILD);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

CHILD(pr_exit_after)
{
    /* argv: MS CODE */
    if (argc < 2)
        return 100;
    th_sleep_ms(atoi(argv[0]));
    return atoi(argv[1]);
}

/* A blocker of "drain" that waits until the program's own child (arg) has
 * ended, without reaping it: it is a zombie from then on, while curfew
 * reaps its own children in "children". */
static int own_child_ended(curfew_blocker self, void *arg)
{
    (void)self;
    pid_t own = (pid_t)(intptr_t)arg;
    int64_t end = th_now_ms() + 20000;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof(si));
        CHECK_EQ(waitid(P_PID, (id_t)own, &si, WEXITED | WNOHANG | WNOWAIT), 0);
        if (si.si_pid == own)
            return CURFEW_DONE;
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "our own child %d never ended",
                    (int)own);
        th_sleep_ms(2);
    }
}

/* P4 without a SIGCHLD handler: the program's own child, unknown to
 * curfew, ends while curfew reaps its children, and is still there for the
 * program's waitpid() with its status. It ends 300 ms after it started;
 * the shutdown waits for that in "drain" (a loaded machine may start it
 * late), so it is a zombie all through "children". */
TEST(pr_own_children_untouched)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    struct sigaction before, after;
    sigaction(SIGCHLD, NULL, &before);
    pid_t own = th_spawn_child("pr_exit_after", "300", "7", NULL);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, NULL, 0);
    curfew_proc_options o = pr_opts("kid", &m);
    curfew_proc *a = pr_spawn(cf, &o, "sleep=drain:800", NULL);
    curfew_proc *b = pr_spawn(cf, &o, "sleep=drain:600", NULL);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "own child ended",
                                own_child_ended, (void *)(intptr_t)own, NULL),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pr_wait_exited(a, 20000);
    pr_wait_exited(b, 20000);
    /* Our own child ended during that shutdown and is still ours: a
     * zombie until we wait for it. */
    int z;
    CHECK_EQ(pr_children(&z), 1);
    CHECK_EQ(z, 1);
    int st = 0;
    CHECK_EQ(waitpid(own, &st, 0), own);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 7);
    CHECK_EQ(pr_children(&z), 0);
    /* No handler was installed for SIGCHLD. */
    sigaction(SIGCHLD, NULL, &after);
    CHECK(after.sa_handler == before.sa_handler);
    CHECK_EQ(after.sa_flags & SA_NOCLDWAIT, before.sa_flags & SA_NOCLDWAIT);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_done(dir);
}
