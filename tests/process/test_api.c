/* Process trees, the edges of the API: bad arguments, unknown programs and
 * phases, a spawn too late or in the middle of the shutdown, another
 * shutdown phase, and the child's side refusing what it must (P1, P2).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "pr_util.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

/* P1: arguments checked, errors named, nothing left behind. */
TEST(pr_spawn_errors)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    curfew *cf = pr_parent(dir, NULL, NULL, 0);
    char *argv[] = {"/proc/self/exe", "--child", "pr_kid", NULL};
    char *empty[] = {NULL};
    char *missing[] = {"/nonexistent/curfew-no-such-program", NULL};
    curfew_proc *p = (curfew_proc *)1;
    CHECK_EQ(curfew_proc_spawn(NULL, argv, NULL, &p), -EINVAL);
    CHECK(p == NULL);
    CHECK_EQ(curfew_proc_spawn(cf, NULL, NULL, &p), -EINVAL);
    CHECK_EQ(curfew_proc_spawn(cf, empty, NULL, &p), -EINVAL);
    CHECK_EQ(curfew_proc_spawn(cf, argv, NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_proc_spawn(cf, missing, NULL, &p), -ENOENT);
    CHECK(p == NULL);
    /* A shutdown phase that does not exist: refused, and the child that
     * was started is killed and reaped. */
    curfew_proc_options o = {0};
    o.shutdown_phase = "no-such-phase";
    CHECK_EQ(curfew_proc_spawn(cf, argv, &o, &p), -EINVAL);
    CHECK(p == NULL);
    int z;
    CHECK_EQ(pr_children(&z), 0);
    CHECK_EQ(curfew_proc_adopt(NULL, 1, 0, NULL, &p), -EINVAL);
    CHECK_EQ(curfew_proc_adopt(cf, 0, 0, NULL, &p), -EINVAL);
    CHECK_EQ(curfew_proc_send(NULL, PR_MSG_PING, "abcd", 4), -EINVAL);
    CHECK_EQ(curfew_proc_free(NULL), -EINVAL);
    CHECK_EQ(curfew_proc_exited(NULL, NULL), -EINVAL);
    CHECK_EQ(curfew_proc_pid(NULL), -1);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_done(dir);
}

/* P2: after its shutdown phase completed, a spawn fails with -ESHUTDOWN
 * and leaves no child running. */
TEST(pr_spawn_too_late)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    curfew *cf = pr_parent(dir, NULL, NULL, 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    char *argv[] = {"/proc/self/exe", "--child", "pr_kid", NULL};
    curfew_proc *p = NULL;
    CHECK_EQ(curfew_proc_spawn(cf, argv, NULL, &p), -ESHUTDOWN);
    CHECK(p == NULL);
    CHECK_EQ(pr_children(NULL), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_done(dir);
}

/* P2: a child started while its phase already waits (here from a trigger
 * of that phase) gets Shutdown too, and the phase waits for it. */
static curfew_proc *late_kid;
static pr_msgs late_msgs;

static int spawn_late(curfew_blocker self, void *arg)
{
    (void)self;
    curfew *cf = arg;
    curfew_proc_options o = pr_opts("late", &late_msgs);
    late_kid = pr_spawn(cf, &o, "sleep=drain:300", NULL);
    return CURFEW_DONE;
}

TEST(pr_spawn_during_phase)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs_init(&late_msgs);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "children"), "spawner",
                                spawn_late, cf, NULL),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK(late_kid);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), late_kid, "late");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "barrier"), "children");
    CHECK_STR(pr_jstr(b, "result"), "ok");
    CHECK(pr_phase_ms(r, "children") >= 300);
    int st = pr_wait_exited(late_kid, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

/* P2: opts.shutdown_phase puts the child's blocker in another phase. The
 * child needs 1000 ms there: "children", with no blocker, must take far
 * less (an empty phase took 240 ms under TSan on a loaded machine). */
TEST(pr_other_shutdown_phase)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("writer", &m);
    o.shutdown_phase = "persist";
    curfew_proc *p = pr_spawn(cf, &o, "sleep=drain:1000", NULL);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "writer");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "barrier"), "persist");
    CHECK_STR(pr_jstr(b, "result"), "ok");
    CHECK(pr_phase_ms(r, "persist") >= 1000);
    CHECK(pr_phase_ms(r, "children") < 1000);
    pr_wait_exited(p, 10000);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

/* The child's side of the API, run in a real child: every refusal is
 * checked there, and its exit status names the first check that failed
 * (0: all held). */
CHILD(pr_api_child)
{
    (void)argc;
    (void)argv;
    curfew *cf = NULL, *other = NULL;
    if (curfew_create(&cf, NULL) != 0 || curfew_create(&other, NULL) != 0)
        return 30;
    unsigned char b[4] = {0};
    if (curfew_child_send(cf, PR_MSG_EARLY, b, 4) != -ENOENT)
        return 31; /* not attached */
    curfew_child_options bad = {0};
    bad.finish_after = "no-such-phase";
    if (curfew_child_attach_opts(cf, &bad) != -EINVAL)
        return 32;
    if (curfew_child_attach(NULL) != -EINVAL)
        return 33;
    /* Attaching after the shutdown began is refused. */
    if (curfew_begin(other) != 0 || curfew_child_attach(other) != -EBUSY)
        return 34;
    if (curfew_run(other) != 0 || curfew_destroy(other) != 0)
        return 35;
    if (curfew_child_attach(cf) != 0)
        return 36;
    if (curfew_child_attach(cf) != -EALREADY)
        return 37;
    if (curfew_child_send(cf, 5, b, 4) != -EINVAL)
        return 38; /* a control type */
    if (curfew_child_send(cf, PR_MSG_EARLY, NULL, 4) != -EINVAL)
        return 39;
    if (curfew_run(cf) != 0)
        return 40;
    /* Full teardown (no options): FinishShutdown went after the last
     * phase; the channel is gone now. */
    if (curfew_destroy(cf) != 0)
        return 41;
    return 0;
}

/* P1: the child's API refuses what it must, then the child shuts down
 * with its parent and ends with status 0. */
TEST(pr_child_api)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("api", &m);
    char *argv[] = {"/proc/self/exe", "--child", "pr_api_child", NULL};
    curfew_proc *p = NULL;
    CHECK_EQ(curfew_proc_spawn(cf, argv, &o, &p), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int st = pr_wait_exited(p, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    curfew__jval *r = pr_parse_file(rec);
    char name[64];
    pr_child_name(name, sizeof(name), p, "api");
    CHECK_STR(pr_jstr(pr_blocker(r, name), "result"), "ok");
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_done(dir);
}

/* P1: without a channel in the environment (none, not a number, not an
 * open descriptor) curfew_child_attach() says -ENOENT. */
TEST(pr_attach_without_channel)
{
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    unsetenv(CURFEW_CHANNEL_FD_ENV);
    CHECK_EQ(curfew_child_attach(cf), -ENOENT);
    setenv(CURFEW_CHANNEL_FD_ENV, "", 1);
    CHECK_EQ(curfew_child_attach(cf), -ENOENT);
    setenv(CURFEW_CHANNEL_FD_ENV, "seven", 1);
    CHECK_EQ(curfew_child_attach(cf), -ENOENT);
    setenv(CURFEW_CHANNEL_FD_ENV, "-3", 1);
    CHECK_EQ(curfew_child_attach(cf), -ENOENT);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    close(fd); /* a number that names nothing now */
    char v[16];
    snprintf(v, sizeof(v), "%d", fd);
    setenv(CURFEW_CHANNEL_FD_ENV, v, 1);
    CHECK_EQ(curfew_child_attach(cf), -ENOENT);
    unsetenv(CURFEW_CHANNEL_FD_ENV);
    CHECK_EQ(curfew_child_send(cf, PR_MSG_EARLY, "abcd", 4), -ENOENT);
    CHECK_EQ(curfew_child_send(NULL, PR_MSG_EARLY, "abcd", 4), -EINVAL);
    CHECK_EQ(curfew_destroy(cf), 0);
}
