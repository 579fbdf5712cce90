/* Process trees when the parent dies (P8): the child sees its channel
 * close without Shutdown and shuts down by itself as an orphan within its
 * own budget; PR_SET_PDEATHSIG (SIGTERM) is the second guard, which ends a
 * child without a SIGTERM handler at once.
 *
 * SPDX-License-Identifier: MIT
 *
 * The test process makes itself a child subreaper, starts a middle process
 * that spawns a curfew child and kills the middle with SIGKILL: the child
 * is reparented to the test, which sees it end with waitpid() and kill().
 */
#define _GNU_SOURCE
#include "pr_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The parent that dies: `pr_middle DIR kid-args...`. It spawns pr_kid with
 * the arguments, writes the kid's pid to DIR/kid.pid and DIR/middle.ready
 * once the kid is up (or at once with "nowait" first), then waits to be
 * killed. */
CHILD(pr_middle)
{
    if (argc < 1)
        return 50;
    const char *dir = argv[0];
    int nowait = argc > 1 && strcmp(argv[1], "nowait") == 0;
    curfew *cf = NULL;
    if (curfew_create(&cf, NULL) != 0)
        return 51;
    pr_ready ready;
    pr_ready_open(&ready);
    char *kargv[40];
    int n = 0;
    kargv[n++] = "/proc/self/exe";
    kargv[n++] = "--child";
    kargv[n++] = "pr_kid";
    if (!nowait)
        kargv[n++] = ready.arg;
    for (int i = 1 + nowait; i < argc && n < 39; i++)
        kargv[n++] = argv[i];
    kargv[n] = NULL;
    curfew_proc *p = NULL;
    if (curfew_proc_spawn(cf, kargv, NULL, &p) != 0)
        return 52;
    if (!nowait)
        pr_ready_wait(&ready, 1, 20000);
    char path[PR_PATH], text[32];
    pr_path(path, sizeof(path), dir, "kid.pid");
    int len = snprintf(text, sizeof(text), "%ld\n", (long)curfew_proc_pid(p));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)len) != len)
        return 53;
    close(fd);
    pr_path(path, sizeof(path), dir, "middle.ready");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return 54;
    close(fd);
    th_sleep_ms(60000);
    return 55;
}

/* Starts the middle with the kid's arguments (NULL-terminated), kills it
 * once ready, and waits for the orphan: returns its wait status, in *ms
 * how long after the kill it was gone (for lower bounds: the orphan may
 * learn of the death before we do) and in *dead_ms how long after the
 * middle was reaped (for upper bounds: a sanitized middle takes a while to
 * die on a loaded machine, and its channel closes only as it does); fails
 * if it still runs limit_ms after the middle was reaped. */
static int orphan_case(const char *dir, int64_t limit_ms, int64_t *ms,
                       int64_t *dead_ms, const char *a1, const char *a2,
                       const char *a3, const char *a4, const char *a5,
                       const char *a6)
{
    CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    pid_t mid = th_spawn_child("pr_middle", dir, a1, a2, a3, a4, a5, a6, NULL);
    char ready[PR_PATH], pidfile[PR_PATH];
    pr_path(ready, sizeof(ready), dir, "middle.ready");
    pr_path(pidfile, sizeof(pidfile), dir, "kid.pid");
    int64_t end = th_now_ms() + 30000;
    while (access(ready, F_OK) != 0) {
        int st;
        if (waitpid(mid, &st, WNOHANG) == mid)
            th_fail(__FILE__, __LINE__, "the middle process ended: %#x", st);
        if (th_now_ms() > end)
            th_fail(__FILE__, __LINE__, "the middle process never got ready");
        th_sleep_ms(5);
    }
    char *text = pr_read_file(pidfile, NULL);
    CHECK(text);
    pid_t kid = (pid_t)atol(text);
    free(text);
    CHECK(kid > 0);
    CHECK_EQ(kill(kid, 0), 0); /* running */

    /* Timed from the kill: the orphan may learn of it before we do. */
    int64_t t0 = th_now_ms();
    CHECK_EQ(kill(mid, SIGKILL), 0);
    int st;
    CHECK_EQ(waitpid(mid, &st, 0), mid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    int64_t t_dead = th_now_ms();
    for (;;) {
        pid_t r = waitpid(kid, &st, WNOHANG);
        if (r == kid)
            break;
        if (r < 0 && errno != ECHILD)
            th_fail(__FILE__, __LINE__, "waitpid: %s", strerror(errno));
        if (th_now_ms() - t_dead > limit_ms) {
            kill(kid, SIGKILL);
            th_fail(__FILE__, __LINE__,
                    "the orphan %d still runs %" PRId64 " ms after its "
                    "parent died",
                    (int)kid, limit_ms);
        }
        th_sleep_ms(2);
    }
    int64_t t_gone = th_now_ms();
    *ms = t_gone - t0;
    *dead_ms = t_gone - t_dead;
    /* Gone, not a zombie: kill() finds nothing. */
    CHECK_EQ(kill(kid, 0), -1);
    CHECK_EQ(errno, ESRCH);
    printf("orphan %d gone %" PRId64
           " ms after the kill of its parent, %" PRId64
           " ms after its parent was reaped, status %#x\n",
           (int)kid, *ms, *dead_ms, st);
    return st;
}

/* P8: a child that ignores SIGTERM (so only the closed channel tells)
 * shuts down as an orphan, runs its phases (300 ms) and exits with
 * orphan_exit_code well within its orphan budget (3000 ms). */
TEST(pr_orphan_shuts_down)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    int64_t ms, dead_ms;
    int st = orphan_case(dir, 3000 + 1000, &ms, &dead_ms, "sigterm=ignore",
                         "orphan=3000", "orphan_code=42", "sleep=drain:300",
                         NULL, NULL);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 42);
    CHECK(ms >= 250);
    CHECK(dead_ms < 3000);
    pr_done(dir);
}

/* P8: an orphan that hangs still exits within its budget (1500 ms): its
 * watchdog acts at the budget's margin (timeout=exit: status 70), or the
 * orphan deadline ends it with orphan_exit_code. */
TEST(pr_orphan_hung_exits_within_budget)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    int64_t ms, dead_ms;
    int st = orphan_case(dir, 1500 + 1000, &ms, &dead_ms, "sigterm=ignore",
                         "orphan=1500", "orphan_code=42", "hang=drain:stuck-db",
                         "timeout=exit", NULL);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 70 || WEXITSTATUS(st) == 42);
    CHECK(dead_ms <= 1500 + 1000);
    pr_done(dir);
}

/* P8: without a SIGTERM handler, PR_SET_PDEATHSIG ends the child at once
 * when its parent dies. */
TEST(pr_orphan_pdeathsig)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    int64_t ms, dead_ms;
    int st =
        orphan_case(dir, 2000, &ms, &dead_ms, "orphan=5000", "orphan_code=42",
                    "hang=drain:stuck-db", NULL, NULL, NULL);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(WTERMSIG(st), SIGTERM);
    CHECK(dead_ms < 1000);
    pr_done(dir);
}

/* P8: with a SIGTERM handler that begins the shutdown, the child shuts
 * down (300 ms of work) and exits by itself within its budget. */
TEST(pr_orphan_sigterm_handler)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    int64_t ms, dead_ms;
    int st = orphan_case(dir, 3000 + 1000, &ms, &dead_ms, "sigterm=handler",
                         "orphan=3000", "orphan_code=42", "sleep=drain:300",
                         NULL, NULL);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 42 || WEXITSTATUS(st) == 0);
    CHECK(ms >= 250);
    CHECK(dead_ms < 3000);
    pr_done(dir);
}

/* P8: the parent dies before the child attached (the child waits for
 * that: until this process, the subreaper, is its parent): attaching finds
 * its channel's peer gone and a different parent, and the child shuts
 * down as an orphan: it runs its phases and exits within its budget
 * (3000 ms) from then. Timed from the attach (its pidfile), not from the
 * kill: the child may still be starting then, which takes seconds for a
 * sanitized one on a loaded machine (with a 500 ms sleep before attaching
 * instead of the wait, it once ended 3985 ms after the kill). */
TEST(pr_orphan_before_attach)
{
    char dir[PR_PATH], attached[PR_PATH], wait_arg[48];
    char pid_arg[PR_PATH + 16];
    pr_begin(dir, sizeof(dir), 60);
    pr_path(attached, sizeof(attached), dir, "attached.pid");
    snprintf(pid_arg, sizeof(pid_arg), "pidfile=%s", attached);
    snprintf(wait_arg, sizeof(wait_arg), "attach_when_ppid=%ld",
             (long)getpid());
    int64_t ms, dead_ms;
    int st = orphan_case(dir, 30000, &ms, &dead_ms, "nowait", wait_arg, pid_arg,
                         "orphan=3000", "orphan_code=42", "sleep=drain:100");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 42);
    /* Written right after curfew_child_attach_opts() returned: the
     * orphan got there, then ran its phases (100 ms in "drain") and was
     * gone within its budget. */
    struct stat sb;
    if (stat(attached, &sb) != 0)
        th_fail(__FILE__, __LINE__,
                "the orphan exited (status %#x, %" PRId64
                " ms after its parent) inside curfew_child_attach_opts(), "
                "without running its phases",
                st, ms);
    int64_t after = ((int64_t)now.tv_sec - sb.st_mtim.tv_sec) * 1000 +
                    (now.tv_nsec - sb.st_mtim.tv_nsec) / 1000000;
    printf("gone %" PRId64 " ms after it attached\n", after);
    CHECK(after >= 90);
    CHECK(after < 3000);
    pr_done(dir);
}
