/* What a child leaves behind: its hang report in the parent at any size,
 * and a shutdown record that says clean after a fast exit.
 *
 * SPDX-License-Identifier: MIT
 */
#include "pr_util.h"

#include <curfew.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* P6: a hang report far over 64 KiB (1 001 pending blockers with long
 * names) still reaches the parent whole and sits under "children" in its
 * record: it is not cut, and it is not dropped. */
TEST(pr_child_big_hang_report)
{
    char dir[PR_PATH], rec[PR_PATH], crep[PR_PATH], crep_arg[PR_PATH + 16];
    pr_begin(dir, sizeof(dir), 60);
    pr_path(crep, sizeof(crep), dir, "child-hang.json");
    snprintf(crep_arg, sizeof(crep_arg), "report=%s", crep);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts("big", &m);
    o.kill_after_ms = 20000;
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p =
        pr_spawn(cf, &o, ready.arg, "hang=drain:stuck", "hang_many=1000",
                 "phase_crash=drain:300", "timeout=exit", crep_arg, NULL);
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int st = pr_wait_exited(p, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 70);
    size_t len = 0;
    free(pr_read_file(crep, &len));
    printf("the child's hang report: %zu bytes\n", len);
    CHECK(len > 128 * 1024);

    curfew__jval *r = pr_parse_file(rec);
    const curfew__jval *kids = pr_jget(r, "children", CURFEW__J_ARR);
    CHECK_EQ(kids->n, 1);
    CHECK_STR(pr_jstr(&kids->items[0], "type"), "curfew-hang");
    CHECK_EQ(pr_jint(&kids->items[0], "pid"), curfew_proc_pid(p));
    const curfew__jval *conds =
        pr_jget(&kids->items[0], "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1001);
    /* The last one too: nothing was cut from the end. */
    CHECK(strstr(pr_jstr(&conds->items[1000], "name"), "stuck-00999-"));
    char bname[64];
    pr_child_name(bname, sizeof(bname), p, "big");
    const curfew__jval *b = pr_blocker(r, bname);
    CHECK(b);
    printf("its blocker's last status: \"%.80s\"\n", pr_jstr(b, "status"));
    CHECK(!strstr(pr_jstr(b, "status"), "refused"));
    CHECK(!strstr(pr_jstr(b, "status"), "could not be read"));
    curfew__json_free(r);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_ready_close(&ready);
    pr_done(dir);
}

/* The child's own record after FinishShutdown and a fast exit (P3). */
static curfew__jval *fast_exit_record(const char *dir, const char *label,
                                      const char *extra)
{
    char rec[PR_PATH], crec[PR_PATH], crec_arg[PR_PATH + 16];
    char file[64];
    snprintf(file, sizeof(file), "%s-record.json", label);
    pr_path(crec, sizeof(crec), dir, file);
    snprintf(crec_arg, sizeof(crec_arg), "record=%s", crec);
    pr_msgs m;
    pr_msgs_init(&m);
    curfew *cf = pr_parent(dir, NULL, rec, sizeof(rec));
    curfew_proc_options o = pr_opts(label, &m);
    pr_ready ready;
    pr_ready_open(&ready);
    curfew_proc *p =
        pr_spawn(cf, &o, ready.arg, crec_arg, "exit=0", extra, NULL);
    pr_ready_wait(&ready, 1, 20000);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int st = pr_wait_exited(p, 10000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    char bname[64];
    pr_child_name(bname, sizeof(bname), p, label);
    curfew__jval *r = pr_parse_file(rec);
    CHECK_STR(pr_jstr(pr_blocker(r, bname), "result"), "ok");
    curfew__json_free(r);
    CHECK_EQ(curfew_destroy(cf), 0);
    pr_ready_close(&ready);
    return pr_parse_file(crec);
}

/* R2, P3: a child that sends FinishShutdown after its last phase and exits
 * at once leaves a record that says clean, every phase ended: the next
 * start must not read it as a shutdown that stopped half-way. */
TEST(pr_fast_exit_record_clean_last_phase)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    curfew__jval *c = fast_exit_record(dir, "last", "sleep=drain:50");
    const curfew__jval *clean = pr_jget(c, "clean", CURFEW__J_BOOL);
    CHECK(clean->boolean);
    const curfew__jval *phases = pr_jget(c, "phases", CURFEW__J_ARR);
    CHECK_EQ(phases->n, 7);
    for (size_t i = 0; i < phases->n; i++)
        CHECK(pr_jget(&phases->items[i], "end_ms", CURFEW__J_NUM) != NULL);
    curfew__json_free(c);
    pr_done(dir);
}

/* R2, C5, P3: with exit_after (the finish point by default) the record of
 * the fast exit is clean and names that phase; the phases after it never
 * ran and say so (end_ms null). */
TEST(pr_fast_exit_record_clean_exit_after)
{
    char dir[PR_PATH];
    pr_begin(dir, sizeof(dir), 60);
    curfew__jval *c = fast_exit_record(dir, "early", "exit_after=persist");
    const curfew__jval *clean = pr_jget(c, "clean", CURFEW__J_BOOL);
    CHECK(clean->boolean);
    CHECK_STR(pr_jstr(c, "exit_after"), "persist");
    const curfew__jval *ph = pr_phase(c, "persist");
    CHECK(ph && pr_jget(ph, "end_ms", CURFEW__J_NUM) != NULL);
    const curfew__jval *fin = pr_phase(c, "final");
    const curfew__jval *fin_end = fin ? curfew__json_get(fin, "end_ms") : NULL;
    CHECK(!fin_end || fin_end->type == CURFEW__J_NULL);
    curfew__json_free(c);
    pr_done(dir);
}
