/* The shutdown record written by the coordinator: CONTRACT.md R2 (and C5
 * for the fast exit's record).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "wd_util.h"

#include <curfew/core.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static const curfew_phase_config four[] = {
    {"p1", 0, 0}, {"p2", 0, 0}, {"p3", 0, 0}, {"p4", 0, 0}};

static char rec_path[WD_PATH];
static curfew__jval *snap[2]; /* the record as seen from p2 and p3 */

static const curfew__jval *phase_at(const curfew__jval *rec, size_t i)
{
    const curfew__jval *ph = wd_jget(rec, "phases", CURFEW__J_ARR);
    if (i >= ph->n)
        th_fail(__FILE__, __LINE__, "no phase %zu in the record", i);
    return &ph->items[i];
}

static const curfew__jval *blocker_of(const curfew__jval *rec, size_t phase,
                                      const char *name)
{
    const curfew__jval *b = wd_jfind(
        wd_jget(phase_at(rec, phase), "blockers", CURFEW__J_ARR), "name", name);
    if (!b)
        th_fail(__FILE__, __LINE__, "no blocker \"%s\" in phase %zu", name,
                phase);
    return b;
}

static int slow_done(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    th_sleep_ms(20);
    return CURFEW_DONE;
}

/* Reads the record from inside a trigger, on the dispatching thread. */
static int snapshot(curfew_blocker self, void *arg)
{
    (void)self;
    int i = (int)(intptr_t)arg;
    snap[i] = wd_parse_file(rec_path);
    th_sleep_ms(20);
    return CURFEW_DONE;
}

static void check_head(const curfew__jval *rec, pid_t pid)
{
    CHECK_STR(wd_jstr(rec, "type"), "curfew-record");
    CHECK_EQ(wd_jint(rec, "version"), 1);
    CHECK_EQ(wd_jint(rec, "pid"), pid);
    CHECK_STR(wd_jstr(rec, "process"), "wd-rec");
}

/* R2: the record is rewritten at every phase change: seen from a trigger
 * of p3, p1 and p2 have ended, p3 has started and not ended, p4 has not
 * started; the final record is clean, with every time filled in. A
 * blocker finished before curfew_begin has 0 for both its times. */
TEST(wd_record_phase_changes)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    wd_path(rec_path, sizeof(rec_path), dir, "record.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = four;
    cfg.phase_count = 4;
    cfg.record_path = rec_path;
    cfg.process_name = "wd-rec";
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_blocker early;
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p1"), "a", slow_done, NULL, NULL),
        0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "p2"), "b", snapshot,
                                (void *)(intptr_t)0, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "p3"), "c", snapshot,
                                (void *)(intptr_t)1, NULL),
             0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p4"), "d", slow_done, NULL, NULL),
        0);
    CHECK_EQ(
        curfew_add_blocker(curfew_phase(cf, "p4"), "early", NULL, NULL, &early),
        0);
    CHECK_EQ(curfew_blocker_done(early), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    CHECK(snap[0] != NULL && snap[1] != NULL);

    /* From p2's trigger: p1 ended, p2 running. */
    const curfew__jval *r = snap[0];
    check_head(r, getpid());
    CHECK_EQ(wd_jbool(r, "clean"), 0);
    CHECK(!wd_jnull(phase_at(r, 0), "end_ms"));
    CHECK(!wd_jnull(phase_at(r, 1), "start_ms"));
    CHECK(wd_jnull(phase_at(r, 1), "end_ms"));
    CHECK(wd_jnull(phase_at(r, 2), "start_ms"));

    /* From p3's trigger: p1 and p2 ended, p3 running, p4 not started. */
    r = snap[1];
    check_head(r, getpid());
    CHECK_EQ(wd_jbool(r, "clean"), 0);
    CHECK(wd_jnull(r, "exit_after"));
    CHECK(!wd_jnull(phase_at(r, 0), "start_ms"));
    CHECK(!wd_jnull(phase_at(r, 0), "end_ms"));
    CHECK(!wd_jnull(phase_at(r, 1), "end_ms"));
    CHECK(wd_jint(phase_at(r, 1), "end_ms") >= 20);
    CHECK(!wd_jnull(phase_at(r, 2), "start_ms"));
    CHECK(wd_jint(phase_at(r, 2), "start_ms") >=
          wd_jint(phase_at(r, 1), "end_ms"));
    CHECK(wd_jnull(phase_at(r, 2), "end_ms"));
    CHECK(wd_jnull(phase_at(r, 3), "start_ms"));
    CHECK(wd_jnull(phase_at(r, 3), "end_ms"));
    CHECK_STR(wd_jstr(blocker_of(r, 1, "b"), "result"), "ok");
    CHECK_STR(wd_jstr(blocker_of(r, 3, "d"), "result"), "pending");
    CHECK(wd_jnull(blocker_of(r, 3, "d"), "start_ms"));

    /* The final record. */
    curfew__jval *fin = wd_parse_file(rec_path);
    check_head(fin, getpid());
    CHECK_EQ(wd_jbool(fin, "clean"), 1);
    CHECK(wd_jnull(fin, "exit_after"));
    CHECK_EQ(wd_jget(fin, "broken_registrations", CURFEW__J_ARR)->n, 0);
    CHECK_EQ(wd_jget(fin, "phases", CURFEW__J_ARR)->n, 4);
    int64_t prev_end = 0;
    static const char *const names[] = {"a", "b", "c", "d"};
    for (size_t i = 0; i < 4; i++) {
        const curfew__jval *p = phase_at(fin, i);
        CHECK_STR(wd_jstr(p, "name"), four[i].name);
        int64_t s = wd_jint(p, "start_ms"), e = wd_jint(p, "end_ms");
        CHECK(s >= prev_end && e >= s + 19);
        prev_end = e;
        const curfew__jval *b = blocker_of(fin, i, names[i]);
        CHECK_STR(wd_jstr(b, "result"), "ok");
        CHECK_STR(wd_jstr(b, "barrier"), four[i].name);
        CHECK(wd_jint(b, "start_ms") >= s && wd_jint(b, "end_ms") <= e);
        CHECK(wd_jint(b, "end_ms") >= wd_jint(b, "start_ms") + 19);
    }
    const curfew__jval *e = blocker_of(fin, 3, "early");
    CHECK_STR(wd_jstr(e, "result"), "ok");
    CHECK_EQ(wd_jint(e, "start_ms"), 0);
    CHECK_EQ(wd_jint(e, "end_ms"), 0);
    curfew__json_free(fin);
    curfew__json_free(snap[0]);
    curfew__json_free(snap[1]);
    CHECK_EQ(curfew_destroy(cf), 0);
    wd_done(dir);
}

static struct {
    curfew *cf;
    curfew_blocker fail_later, removed, svc_job;
    atomic_int fail_later_triggered;
} h;

/* Fails "fail-later" 20 ms after its trigger ran (not after p2 began: its
 * trigger may run later than that on a loaded machine). */
static void *helper(void *arg)
{
    (void)arg;
    int64_t end = th_now_ms() + 10000;
    while (!atomic_load(&h.fail_later_triggered) && th_now_ms() < end)
        th_sleep_ms(1);
    th_sleep_ms(20);
    curfew_blocker_fail(h.fail_later, -ENOSPC, "disk full");
    curfew_remove_blocker(h.removed);
    curfew_blocker_done(h.svc_job);
    return NULL;
}

static int pending_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_PENDING;
}

static int fail_later_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    atomic_store(&h.fail_later_triggered, 1);
    return CURFEW_PENDING;
}

static int done_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_DONE;
}

static int eio_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return -EIO;
}

/* R2: every result a blocker can end with, in the final record of a
 * shutdown that completed: "ok", "error" with its "error" text, "timeout"
 * (CONTINUE, W3), "removed"; blockers of a nested barrier name it. */
TEST(wd_record_results)
{
    char dir[WD_PATH], report[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    wd_path(rec_path, sizeof(rec_path), dir, "record.json");
    wd_path(report, sizeof(report), dir, "report.json");
    static const curfew_phase_config phases[] = {
        {"p1", 0, 0}, {"p2", 0, 0}, {"p3", 0, 200}};
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 3;
    cfg.warn_after_ms = CURFEW_NEVER;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.record_path = rec_path;
    cfg.report_path = report;
    cfg.process_name = "wd-rec";
    CHECK_EQ(curfew_create(&h.cf, &cfg), 0);
    curfew *cf = h.cf;
    curfew_barrier *p1 = curfew_phase(cf, "p1"), *p2 = curfew_phase(cf, "p2");
    curfew_barrier *p3 = curfew_phase(cf, "p3"), *svc;
    curfew_blocker early;
    CHECK_EQ(curfew_add_blocker(p1, "early", NULL, NULL, &early), 0);
    CHECK_EQ(curfew_blocker_done(early), 0);
    CHECK_EQ(curfew_add_blocker(p1, "ok-now", done_trigger, NULL, NULL), 0);
    CHECK_EQ(curfew_add_blocker(p1, "trig-fail", eio_trigger, NULL, NULL), 0);
    CHECK_EQ(curfew_add_blocker(p2, "fail-later", fail_later_trigger, NULL,
                                &h.fail_later),
             0);
    CHECK_EQ(curfew_add_blocker(p2, "removed", NULL, NULL, &h.removed), 0);
    CHECK_EQ(curfew_barrier_create(cf, "svc", NULL, &svc), 0);
    CHECK_EQ(curfew_barrier_wait_in(svc, p2, "svc"), 0);
    CHECK_EQ(curfew_add_blocker(svc, "svc-job", NULL, NULL, &h.svc_job), 0);
    CHECK_EQ(curfew_add_blocker(p3, "hung", pending_trigger, NULL, NULL), 0);
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, helper, NULL), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    pthread_join(t, NULL);

    curfew__jval *rec = wd_parse_file(rec_path);
    check_head(rec, getpid());
    /* Every phase completed: a clean shutdown, timeouts and all. */
    CHECK_EQ(wd_jbool(rec, "clean"), 1);
    CHECK(wd_jnull(rec, "exit_after"));

    const curfew__jval *b = blocker_of(rec, 0, "early");
    CHECK_STR(wd_jstr(b, "result"), "ok");
    CHECK_EQ(wd_jint(b, "start_ms"), 0);
    CHECK_EQ(wd_jint(b, "end_ms"), 0);

    b = blocker_of(rec, 0, "ok-now");
    CHECK_STR(wd_jstr(b, "result"), "ok");
    CHECK(!wd_jnull(b, "start_ms") && !wd_jnull(b, "end_ms"));

    b = blocker_of(rec, 0, "trig-fail");
    CHECK_STR(wd_jstr(b, "result"), "error");
    CHECK(strstr(wd_jstr(b, "error"), "trigger failed") != NULL);
    CHECK(strstr(wd_jstr(b, "error"), "EIO") != NULL);

    b = blocker_of(rec, 1, "fail-later");
    CHECK_STR(wd_jstr(b, "result"), "error");
    CHECK(strstr(wd_jstr(b, "error"), "disk full") != NULL);
    CHECK(strstr(wd_jstr(b, "error"), "ENOSPC") != NULL);
    CHECK(wd_jint(b, "end_ms") >= wd_jint(b, "start_ms") + 19);

    b = blocker_of(rec, 1, "removed");
    CHECK_STR(wd_jstr(b, "result"), "removed");
    CHECK(curfew__json_get(b, "error") == NULL);

    b = blocker_of(rec, 1, "svc");
    CHECK_STR(wd_jstr(b, "barrier"), "p2");
    CHECK_STR(wd_jstr(b, "result"), "ok");
    b = blocker_of(rec, 1, "svc-job");
    CHECK_STR(wd_jstr(b, "barrier"), "svc");
    CHECK_STR(wd_jstr(b, "result"), "ok");

    b = blocker_of(rec, 2, "hung");
    CHECK_STR(wd_jstr(b, "result"), "timeout");
    /* 200 ms after p3 started waiting (its trigger ran a little later). */
    CHECK(wd_jint(b, "end_ms") - wd_jint(phase_at(rec, 2), "start_ms") >= 200);
    CHECK(curfew__json_get(b, "error") == NULL);
    curfew__json_free(rec);
    CHECK_EQ(curfew_destroy(cf), 0);
    wd_done(dir);
}

/* argv: dir. exit_after "p2" (C5) with exit_code 5; p3 holds a blocker and
 * a nested barrier that never start waiting. */
CHILD(wd_record_fast)
{
    if (argc < 1)
        return 2;
    const char *dir = argv[0];
    wd_child_setup(dir);
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "record.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = four;
    cfg.phase_count = 3;
    cfg.record_path = path;
    cfg.process_name = "wd-rec";
    cfg.exit_after = "p2";
    cfg.exit_code = 5;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *svc, *p3 = curfew_phase(cf, "p3");
    if (curfew_add_blocker(curfew_phase(cf, "p1"), "a", slow_done, NULL,
                           NULL) != 0 ||
        curfew_add_blocker(curfew_phase(cf, "p2"), "b", slow_done, NULL,
                           NULL) != 0 ||
        curfew_add_blocker(p3, "later", NULL, NULL, NULL) != 0 ||
        curfew_barrier_create(cf, "svc", NULL, &svc) != 0 ||
        curfew_barrier_wait_in(svc, p3, "svc") != 0 ||
        curfew_add_blocker(svc, "svc-later", NULL, NULL, NULL) != 0)
        return 101;
    if (curfew_begin(cf) != 0)
        return 103;
    curfew_run(cf);
    return 104; /* never: the fast exit comes first */
}

/* R2 + C5: with exit_after set, the record written just before the fast
 * exit is "clean": true and names the phase; blockers of the phases that
 * never ran, a nested barrier's included, are "pending" with null times. */
TEST(wd_record_exit_after)
{
    char dir[WD_PATH], path[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = th_spawn_child("wd_record_fast", dir, (char *)NULL);
    wd_expect_exit(wd_wait_exit(pid, 10000, NULL), 5);
    wd_path(path, sizeof(path), dir, "record.json");
    curfew__jval *rec = wd_parse_file(path);
    check_head(rec, pid);
    CHECK_EQ(wd_jbool(rec, "clean"), 1);
    CHECK_STR(wd_jstr(rec, "exit_after"), "p2");
    CHECK_EQ(wd_jget(rec, "phases", CURFEW__J_ARR)->n, 3);
    CHECK(!wd_jnull(phase_at(rec, 0), "end_ms"));
    CHECK(!wd_jnull(phase_at(rec, 1), "end_ms"));
    CHECK(wd_jnull(phase_at(rec, 2), "start_ms"));
    CHECK(wd_jnull(phase_at(rec, 2), "end_ms"));
    CHECK_STR(wd_jstr(blocker_of(rec, 1, "b"), "result"), "ok");
    static const char *const never[] = {"later", "svc", "svc-later"};
    for (int i = 0; i < 3; i++) {
        const curfew__jval *b = blocker_of(rec, 2, never[i]);
        CHECK_STR(wd_jstr(b, "result"), "pending");
        CHECK(wd_jnull(b, "start_ms"));
        CHECK(wd_jnull(b, "end_ms"));
    }
    CHECK_STR(wd_jstr(blocker_of(rec, 2, "svc-later"), "barrier"), "svc");
    curfew__json_free(rec);
    wd_done(dir);
}
