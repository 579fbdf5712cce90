/* Process trees, what the parent learns about a child that is slow or
 * hangs: its pending blockers as the status of its blocker (P5), its hang
 * report under "children" in the parent's report and record (P6), and the
 * budget passed down with Shutdown so the child reports before it is
 * killed (P7).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "pr_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const phase_names[] = {
    "stop-accepting", "drain",   "children", "persist",
    "telemetry",      "threads", "final"};

/* The default phases, with "children" given its own crash timer. */
static void phases_with(curfew_phase_config out[7], int32_t children_crash)
{
    for (int i = 0; i < 7; i++) {
        out[i].name = phase_names[i];
        out[i].warn_after_ms = 0;
        out[i].crash_after_ms = i == 2 ? children_crash : 0;
    }
}

/* The parent's state report (curfew_report_write_state) parsed. */
static curfew__jval *state_now(curfew *cf, const char *dir)
{
    char path[PR_PATH];
    pr_path(path, sizeof(path), dir, "state.json");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(curfew_report_write_state(cf, fd), 0);
    close(fd);
    return pr_parse_file(path);
}

/* The status of the condition called name in a report, or NULL. */
static const char *condition_status(const curfew__jval *rep, const char *name)
{
    const curfew__jval *c = curfew__json_get(rep, "conditions");
    if (!c || c->type != CURFEW__J_ARR)
        return NULL;
    for (size_t i = 0; i < c->n; i++) {
        const char *n =
            curfew__json_str(curfew__json_get(&c->items[i], "name"));
        if (n && strcmp(n, name) == 0)
            return curfew__json_str(curfew__json_get(&c->items[i], "status"));
    }
    return NULL;
}

/* Whether a report's "conditions" name a blocker called name. */
static int has_condition(const curfew__jval *rep, const char *name)
{
    const curfew__jval *c = curfew__json_get(rep, "conditions");
    if (!c || c->type != CURFEW__J_ARR)
        return 0;
    for (size_t i = 0; i < c->n; i++) {
        const char *n =
            curfew__json_str(curfew__json_get(&c->items[i], "name"));
        if (n && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

/* Drives the parent's shutdown by hand (D1), calling look(arg) about every
 * 30 ms until it completed. */
static void drive(curfew *cf, void (*look)(void *), void *arg)
{
    CHECK_EQ(curfew_begin(cf), 0);
    int64_t next_look = 0;
    for (;;) {
        int r = curfew_dispatch(cf);
        CHECK(r >= 0);
        if (r == 1)
            break;
        if (th_now_ms() >= next_look) {
            look(arg);
            next_look = th_now_ms() + 30;
        }
        int t = curfew_timeout_ms(cf);
        struct pollfd pfd = {.fd = curfew_fd(cf), .events = POLLIN};
        poll(&pfd, 1, t < 0 || t > 30 ? 30 : t);
    }
}

typedef struct watch {
    curfew *cf;
    const char *dir;
    char name[2][64];                    /* the blockers of the two children */
    char seen[2][CURFEW_STATUS_MAX + 1]; /* the first status naming what */
    const char *what[2];
    int64_t t0, seen_at[2];
    int64_t kids_at[2]; /* child reports in the parent's state then */
} watch;

static void look(void *arg)
{
    watch *w = arg;
    curfew__jval *st = state_now(w->cf, w->dir);
    for (int i = 0; i < 2; i++) {
        if (w->seen[i][0] || !w->what[i])
            continue;
        const char *s = condition_status(st, w->name[i]);
        if (s && strstr(s, w->what[i])) {
            snprintf(w->seen[i], sizeof(w->seen[i]), "%s", s);
            w->seen_at[i] = th_now_ms() - w->t0;
            w->kids_at[i] = (int64_t)pr_jget(st, "children", CURFEW__J_ARR)->n;
        }
    }
    curfew__json_free(st);
}

/* P5: while a child shuts down, what it waits for ("phase: name (status)"
 * of its pending blockers) is the status of its blocker in the parent: in
 * the parent's state report while it waits, and in its hang report.
 * P6: the hung child's own report reaches the parent before the child's
 * watchdog acts, and sits under "children" in the parent's hang report and
 * record. */
TEST(pr_child_status_and_hang_report)
{
    char dir[PR_PATH], rec[PR_PATH], prep[PR_PATH], crep[PR_PATH];
    char report_arg[PR_PATH + 16];
    pr_begin(dir, sizeof(dir), 60);
    pr_path(prep, sizeof(prep), dir, "parent-hang.json");
    pr_path(crep, sizeof(crep), dir, "child-hang.json");
    snprintf(report_arg, sizeof(report_arg), "report=%s", crep);
    curfew_phase_config phases[7];
    phases_with(phases, 3000);
    curfew_config cfg = {0};
    cfg.phases = phases;
    cfg.phase_count = 7;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.report_path = prep;
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, &cfg, rec, sizeof(rec));
    curfew_proc_options oh = pr_opts("hung", &m);
    oh.kill_after_ms = 20000;
    curfew_proc_options os = pr_opts("slow", &m);
    os.kill_after_ms = 20000;
    pr_ready ready;
    pr_ready_open(&ready);
    /* "hung" waits for stuck-db in persist; its watchdog fires after
     * 1500 ms there, reports and exits 70. "slow" needs 4500 ms in drain,
     * so the parent's own watchdog (3000 ms, CONTINUE) sees it pending. */
    curfew_proc *hung =
        pr_spawn(cf, &oh, ready.arg, "hang=persist:stuck-db",
                 "phase_crash=persist:1500", "timeout=exit", report_arg, NULL);
    curfew_proc *slow = pr_spawn(cf, &os, ready.arg, "sleep=drain:4500", NULL);
    pr_ready_wait(&ready, 2, 20000);

    watch w = {0};
    w.cf = cf;
    w.dir = dir;
    pr_child_name(w.name[0], sizeof(w.name[0]), hung, "hung");
    pr_child_name(w.name[1], sizeof(w.name[1]), slow, "slow");
    /* The child sends its pending blockers when they change and at every
     * 100 ms wake-up, so the first summary naming stuck-db may predate its
     * trigger's status: wait for the one that carries it. */
    w.what[0] = "waiting for the disk";
    w.what[1] = "sleep-4500";
    w.t0 = th_now_ms();
    drive(cf, look, &w);

    /* P5, seen while the children waited. */
    printf("hung's status at %" PRId64 " ms: \"%s\"\nslow's status at %" PRId64
           " ms: \"%s\"\n",
           w.seen_at[0], w.seen[0], w.seen_at[1], w.seen[1]);
    CHECK(strstr(w.seen[0], "persist"));
    CHECK(strstr(w.seen[0], "stuck-db"));
    CHECK(strstr(w.seen[0], "waiting for the disk"));
    /* Before the child's watchdog fired: its hang report (sent after
     * those statuses, on the same channel) had not reached the parent.
     * Not a time bound: on a loaded machine the child may take most of a
     * second to reach "persist". */
    CHECK_EQ(w.kids_at[0], 0);
    CHECK(strstr(w.seen[1], "drain"));
    CHECK(strstr(w.seen[1], "sleep-4500"));

    /* The child's own report, written before it exited 70. */
    int st = pr_wait_exited(hung, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 70);
    curfew__jval *child_rep = pr_parse_file(crep);
    CHECK_STR(pr_jstr(child_rep, "type"), "curfew-hang");
    CHECK_EQ(pr_jint(child_rep, "pid"), curfew_proc_pid(hung));

    /* P6 in the parent's hang report (children phase, 3000 ms): the slow
     * child pending with its status (P5), the hung child's report under
     * "children". */
    curfew__jval *prep_v = pr_parse_file(prep);
    CHECK_STR(pr_jstr(prep_v, "type"), "curfew-hang");
    CHECK_STR(pr_jstr(prep_v, "phase"), "children");
    const char *s = condition_status(prep_v, w.name[1]);
    CHECK(s && strstr(s, "sleep-4500"));
    const curfew__jval *kids = pr_jget(prep_v, "children", CURFEW__J_ARR);
    CHECK_EQ(kids->n, 1);
    CHECK_STR(pr_jstr(&kids->items[0], "type"), "curfew-hang");
    CHECK_EQ(pr_jint(&kids->items[0], "pid"), curfew_proc_pid(hung));
    CHECK_STR(pr_jstr(&kids->items[0], "phase"), "persist");
    CHECK(has_condition(&kids->items[0], "stuck-db"));

    /* P6 in the parent's record, and the hung child's blocker: it
     * reported a hang, then exited 70 (P4). */
    curfew__jval *r = pr_parse_file(rec);
    kids = pr_jget(r, "children", CURFEW__J_ARR);
    CHECK_EQ(kids->n, 1);
    CHECK_EQ(pr_jint(&kids->items[0], "pid"), curfew_proc_pid(hung));
    CHECK(has_condition(&kids->items[0], "stuck-db"));
    const curfew__jval *b = pr_blocker(r, w.name[0]);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "error");
    CHECK(strstr(pr_jstr(b, "error"), "status 70"));
    CHECK(strstr(pr_jstr(b, "status"), "hang"));
    /* The slow child's blocker was expired by the parent's watchdog. */
    CHECK_STR(pr_jstr(pr_blocker(r, w.name[1]), "result"), "timeout");

    pr_wait_exited(slow, 20000);
    CHECK_EQ(pr_children(NULL), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    curfew__json_free(prep_v);
    curfew__json_free(child_rep);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* P7: Shutdown carries min(kill_after_ms, the parent's remaining budget);
 * the child's watchdog takes it as its budget. */
TEST(pr_budget_passed_down)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    curfew_config cfg = {0};
    cfg.budget_ms = 4000;
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, &cfg, NULL, 0);
    curfew_proc_options long_kill = pr_opts("budget", &m);
    long_kill.kill_after_ms = 20000;
    curfew_proc_options short_kill = pr_opts("kill", &m);
    short_kill.kill_after_ms = 1500;
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *a = pr_spawn(cf, &long_kill, ready.arg, "stamp=1", NULL);
    curfew_proc *b = pr_spawn(cf, &short_kill, ready.arg, "stamp=1", NULL);
    pr_ready_wait(&ready, 2, 20000);
    /* The parent spends some of its budget before "children". */
    th_sleep_ms(10);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pr_wait_exited(a, 10000);
    pr_wait_exited(b, 10000);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nstamps, 2);
    int64_t ba = -2, bb = -2;
    for (int i = 0; i < 2; i++) {
        if (m.stamp_pid[i] == curfew_proc_pid(a))
            ba = m.stamp_budget[i];
        if (m.stamp_pid[i] == curfew_proc_pid(b))
            bb = m.stamp_budget[i];
    }
    pthread_mutex_unlock(&m.mu);
    printf("budget of the child: %" PRId64
           " ms (parent's left of 4000), %" PRId64 " ms (kill_after_ms 1500)\n",
           ba, bb);
    CHECK(ba > 2000 && ba <= 4000);
    CHECK(bb > 1000 && bb <= 1500);
    CHECK_EQ(curfew_destroy(cf), 0);

    /* No budget and no kill timer: the child gets none either. */
    cf = pr_parent(dir, NULL, NULL, 0);
    curfew_proc_options never = pr_opts("never", &m);
    never.kill_after_ms = CURFEW_NEVER;
    pthread_mutex_lock(&m.mu);
    m.nstamps = 0;
    pthread_mutex_unlock(&m.mu);
    curfew_proc *c = pr_spawn(cf, &never, "stamp=1", NULL);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pr_wait_exited(c, 10000);
    pthread_mutex_lock(&m.mu);
    CHECK_EQ(m.nstamps, 1);
    CHECK_EQ(m.stamp_budget[0], -1);
    pthread_mutex_unlock(&m.mu);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* P7: a child that hangs, with nothing but the budget from Shutdown
 * (kill_after_ms 3000; its budget_margin_ms 1500, room for slow sanitized
 * children), acts on its own watchdog (at 3000 - 1500 ms, the default
 * abort) and its report arrives before the parent's force-kill: the
 * blocker shows the report, ends "error" (SIGABRT) rather than "timeout",
 * and the report is under "children". */
TEST(pr_child_reports_before_kill)
{
    char dir[PR_PATH], rec[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("hangs", &m);
    o.kill_after_ms = 3000;
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p = pr_spawn(cf, &o, ready.arg, "hang=drain:stuck-db",
                              "budget_margin=1500", NULL);
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    curfew__jval *r = pr_parse_file(rec);
    int64_t ms = pr_phase_ms(r, "children");
    printf("\"children\" took %" PRId64 " ms (force-kill at 3000)\n", ms);
    /* It acts at its budget (3000, less what the parent may keep back)
     * minus its margin: not at once, and before the kill. */
    CHECK(ms >= 1000);
    CHECK(ms < 3000);
    char name[64];
    pr_child_name(name, sizeof(name), p, "hangs");
    const curfew__jval *b = pr_blocker(r, name);
    CHECK(b);
    CHECK_STR(pr_jstr(b, "result"), "error");
    CHECK(strstr(pr_jstr(b, "error"), "signal 6"));
    printf("its blocker's last status: \"%s\"\n", pr_jstr(b, "status"));
    /* What it waited for (P5), or that its report came (P6): whichever
     * the child's last two messages left. */
    CHECK(strstr(pr_jstr(b, "status"), "stuck-db") ||
          strstr(pr_jstr(b, "status"), "hang"));
    const curfew__jval *kids = pr_jget(r, "children", CURFEW__J_ARR);
    CHECK_EQ(kids->n, 1);
    CHECK_EQ(pr_jint(&kids->items[0], "pid"), curfew_proc_pid(p));
    CHECK(has_condition(&kids->items[0], "stuck-db"));
    /* The child has no report_path: what it sends is still its hang report
     * (R1), not a state report. */
    CHECK_STR(pr_jstr(&kids->items[0], "type"), "curfew-hang");
    CHECK_STR(pr_jstr(&kids->items[0], "phase"), "drain");
    CHECK(pr_jint(&kids->items[0], "timeout_ms") <= 1500);
    CHECK(pr_jint(&kids->items[0], "elapsed_ms") < 3000);
    int st = pr_wait_exited(p, 5000);
    CHECK(WIFSIGNALED(st));
    CHECK_EQ(WTERMSIG(st), SIGABRT);
    CHECK_EQ(curfew_destroy(cf), 0);
    curfew__json_free(r);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* P6, P7, W5: the parent has a budget (3000 ms; its watchdog reports at
 * 2500 ms and goes on) and waits for two children: one that hangs with
 * nothing but the budget from Shutdown, and one that never reads its
 * channel. The hung child's report must be in the parent's hands when the
 * parent's own report is written: that report lists it under "children",
 * next to the deaf child still pending. The hung child's budget_margin_ms
 * is 1500, as in pr_child_reports_before_kill: with the default 500 it
 * acts only the tenth of the budget the parent keeps back (about 270 ms)
 * before the parent does, and under TSan on a loaded machine its report
 * once came later than that. */
TEST(pr_child_report_in_parent_budget_report)
{
    char dir[PR_PATH], rec[PR_PATH], prep[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    pr_path(prep, sizeof(prep), dir, "parent-hang.json");
    curfew_config cfg = {0};
    cfg.budget_ms = 3000;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.report_path = prep;
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, &cfg, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("hangs", &m);
    o.kill_after_ms = 20000;
    curfew_proc_options od = pr_opts("deaf", &m);
    od.kill_after_ms = 20000;
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p = pr_spawn(cf, &o, ready.arg, "hang=drain:stuck-db",
                              "timeout=exit", "budget_margin=1500", NULL);
    char *deaf_argv[] = {"/proc/self/exe", "--child", "pr_deaf", NULL};
    curfew_proc *deaf = NULL;
    CHECK_EQ(curfew_proc_spawn(cf, deaf_argv, &od, &deaf), 0);
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int st = pr_wait_exited(p, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 70);
    curfew__jval *rep = pr_parse_file(prep);
    CHECK_STR(pr_jstr(rep, "phase"), "children");
    char name[64];
    pr_child_name(name, sizeof(name), deaf, "deaf");
    CHECK(has_condition(rep, name));
    const curfew__jval *kids = pr_jget(rep, "children", CURFEW__J_ARR);
    printf("children in the parent's hang report: %zu\n", kids->n);
    CHECK_EQ(kids->n, 1);
    CHECK_EQ(pr_jint(&kids->items[0], "pid"), curfew_proc_pid(p));
    CHECK_STR(pr_jstr(&kids->items[0], "type"), "curfew-hang");
    CHECK(has_condition(&kids->items[0], "stuck-db"));
    /* curfew_destroy() kills and reaps the deaf child. */
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(pr_children(NULL), 0);
    curfew__json_free(rep);
    pr_ready_close(&ready);
    pr_done(dir);
}
