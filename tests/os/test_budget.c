/* Tests for budgets from the environment: CONTRACT.md S3 (with W5).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "os_util.h"

#include <curfew.h>

#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

static int64_t budget_with(const char *env, int64_t cfg_budget)
{
    if (env)
        CHECK(setenv("CURFEW_BUDGET_MS", env, 1) == 0);
    else
        unsetenv("CURFEW_BUDGET_MS");
    curfew_config cfg = {0};
    cfg.budget_ms = cfg_budget;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    int64_t left = curfew_budget_left_ms(cf); /* the whole budget */
    CHECK_EQ(curfew_destroy(cf), 0);
    return left;
}

/* S3: CURFEW_BUDGET_MS sets budget_ms when the program set none. */
TEST(budget_from_env)
{
    CHECK_EQ(budget_with(NULL, 0), -1);
    CHECK_EQ(budget_with("1234", 0), 1234);
    CHECK_EQ(budget_with("30000", 0), 30000);
}

/* S3: a budget the program set wins over the environment, and so does
 * curfew_set_budget(). */
TEST(budget_cfg_wins)
{
    CHECK_EQ(budget_with("1234", 500), 500);
    CHECK(setenv("CURFEW_BUDGET_MS", "1234", 1) == 0);
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_budget_left_ms(cf), 1234);
    CHECK_EQ(curfew_set_budget(cf, 700), 0);
    CHECK_EQ(curfew_budget_left_ms(cf), 700);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S3: 0 or empty means no budget; a value that is not a whole number of
 * milliseconds is ignored (with a line on stderr), never an error of
 * curfew_create(). */
TEST(budget_env_invalid)
{
    CHECK_EQ(budget_with("", 0), -1);
    CHECK_EQ(budget_with("0", 0), -1);
    CHECK_EQ(budget_with("abc", 0), -1);
    CHECK_EQ(budget_with("-5", 0), -1);
    CHECK_EQ(budget_with("12ms", 0), -1);
    CHECK_EQ(budget_with(" 12", 0), -1);
    CHECK_EQ(budget_with("99999999999999999999", 0), -1);
}

/* A child whose shutdown hangs, with no budget of its own. */
CHILD(budget_kid)
{
    if (argc < 1)
        return 2;
    char p[OS_PATH];
    os_path(p, sizeof(p), argv[0], "stderr");
    os_redirect_stderr(p);
    char report[OS_PATH];
    os_path(report, sizeof(report), argv[0], "report.json");
    curfew_config cfg = {0};
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.timeout_exit_code = 42;
    cfg.budget_margin_ms = 100;
    cfg.report_path = report;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 10;
    curfew_add_blocker(curfew_phase(cf, "drain"), "forever", NULL, NULL, NULL);
    curfew_begin(cf);
    curfew_run(cf); /* the watchdog exits first */
    return 11;
}

/* S3, W5: the orchestrator's grace period reaches the watchdog: with
 * CURFEW_BUDGET_MS=800 a hanging shutdown is reported and ended at about
 * 700 ms, long before the phase's own 60 s crash timeout. */
TEST(budget_env_reaches_watchdog)
{
    char dir[OS_PATH];
    os_tmpdir(dir, sizeof(dir));
    CHECK(setenv("CURFEW_BUDGET_MS", "800", 1) == 0);
    int64_t t0 = th_now_ms();
    pid_t pid = th_spawn_child("budget_kid", dir, (const char *)NULL);
    int st = th_wait_child(pid, 30000);
    int64_t took = th_now_ms() - t0;
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 42);
    CHECK(took < 10000);
    char rp[OS_PATH];
    os_path(rp, sizeof(rp), dir, "report.json");
    char *r = os_read_file(rp);
    CHECK(r && strstr(r, "\"curfew-hang\"") && strstr(r, "forever"));
    free(r);
    os_done(dir);
}
