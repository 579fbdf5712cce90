/* The watchdog's hang path: CONTRACT.md W1, W3, W4, W5, R1, N2 (the
 * innermost barrier is named) and C6 with the watchdog thread.
 *
 * SPDX-License-Identifier: MIT
 *
 * Every scenario that ends the process runs in a child (th_spawn_child);
 * the child puts a file of the test's directory on its descriptor 2 and
 * leaves time stamps in dir/info (wd_info), which the parent compares with
 * the report it parses. CLOCK_MONOTONIC is shared by both processes.
 */
#define _GNU_SOURCE
#include "wd_util.h"

#include <curfew/core.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define HANG_MS 300 /* crash_after_ms of the hanging phase */
/* The hang is reported within the deadline + SLACK_MS (issue 3's bound):
 * the watchdog wakes at the deadline (W1) and stamps the report before it
 * writes anything, so only its thread's wait for a CPU counts here; disk
 * and exit times have their own slack below. (A watchdog on a fixed tick
 * is caught by wd_no_tick.) */
#define SLACK_MS 100
/* The hang event runs after the report (and the record, when there is
 * one) was written with fsync: its time may be WRITE_SLACK_MS later still
 * on a loaded machine's disk. The report's own elapsed_ms is held to
 * SLACK_MS. */
#define WRITE_SLACK_MS 700
/* The process has ended within EXIT_SLACK_MS of the hang event (which runs
 * after the report was written, just before the on_timeout action): the
 * action follows the report at once (W3), but abort() and _exit() of a
 * sanitizer's process (its shadow memory, abort's own handlers) and the
 * parent's noticing it take a while on a loaded machine. */
#define EXIT_SLACK_MS 1000
#define QUICK_MS 30 /* how long the first phase's blocker takes */
/* The child stamps "wait_ns" in the PHASE_BEGIN event of "second", after
 * the barrier took its start time (and, with a record, after the record's
 * rewrite, which a loaded disk can make slow), and "before_wait_ns" at a
 * time before it: at the end of the first phase's blocker (C3: "second"
 * starts only after "first" completed) or before curfew_begin. The time
 * since the barrier started is at most the one since before_wait_ns and at
 * least the one since wait_ns. The report's own elapsed_ms is checked
 * against the deadline exactly. */
#define CHILD_MS 10000

#define HANG_PREFIX "{\"type\":\"curfew-hang\""
#define WARN_PREFIX "curfew: warning: "

static const curfew_phase_config three[] = {
    {"first", 0, 0}, {"second", 0, 0}, {"third", 0, 0}};

/* ---- child side -----------------------------------------------------------
 */

static const char *g_dir; /* the child's test directory */
static sem_t never;       /* nobody ever posts it */

/* Time stamps for the parent: when "second" started waiting (just after
 * its barrier's t_start is taken), and when the hang event ran. */
static void child_events(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_PHASE_BEGIN && ev->phase &&
        strcmp(ev->phase, "second") == 0)
        wd_info(g_dir, "wait_ns", wd_mono_ns());
    else if (ev->type == CURFEW_EV_HANG)
        wd_info(g_dir, "hang_ns", wd_mono_ns());
    else if (ev->type == CURFEW_EV_WARNING)
        wd_info(g_dir, "warning_event", 1);
}

static int quick_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    th_sleep_ms(QUICK_MS);
    wd_info(g_dir, "before_wait_ns", wd_mono_ns());
    return CURFEW_DONE;
}

static int stuck_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    wd_info(g_dir, "stuck_ns", wd_mono_ns());
    curfew_blocker_status(self, "waiting for %s", "the disk");
    return CURFEW_PENDING;
}

/* Blocks the dispatching thread for good (W1). */
static void block_forever(void)
{
    for (;;)
        (void)sem_wait(&never);
}

static int sem_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    curfew_blocker_status(self, "in sem_wait, nobody posts");
    block_forever();
    return CURFEW_DONE;
}

static void child_config(curfew_config *cfg, char *report, char *record,
                         const char *process)
{
    memset(cfg, 0, sizeof(*cfg));
    wd_path(report, WD_PATH, g_dir, "report.json");
    wd_path(record, WD_PATH, g_dir, "record.json");
    cfg->phases = three;
    cfg->phase_count = 3;
    cfg->crash_after_ms = HANG_MS;
    cfg->report_path = report;
    cfg->process_name = process;
    cfg->on_event = child_events;
    /* record_path is left NULL: only wd_hang asks for a record. */
}

/* argv: dir, on_timeout, timeout_exit_code. "second" hangs on "stuck". */
CHILD(wd_hang)
{
    if (argc < 3)
        return 2;
    g_dir = argv[0];
    wd_child_setup(g_dir);
    char report[WD_PATH], record[WD_PATH];
    curfew_config cfg;
    child_config(&cfg, report, record, "wd-hang");
    cfg.record_path = record;
    cfg.on_timeout = (curfew_timeout_action)atoi(argv[1]);
    cfg.timeout_exit_code = atoi(argv[2]);
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *first = curfew_phase(cf, "first");
    curfew_barrier *second = curfew_phase(cf, "second");
    if (curfew_add_blocker(first, "quick", quick_trigger, NULL, NULL) != 0)
        return 101;
    /* B5: a failed add is listed in the report. Keep each add on one line:
     * the line number is what the report must show. */
    int r = curfew_add_blocker(second, NULL, NULL, NULL, NULL);
    wd_info(g_dir, "broken_line", __LINE__ - 1);
    wd_info(g_dir, "broken_rc", r);
    curfew_blocker b;
    r = curfew_add_blocker(second, "stuck", stuck_trigger, NULL, &b);
    wd_info(g_dir, "stuck_line", __LINE__ - 1);
    if (r != 0)
        return 102;
    if (curfew_begin(cf) != 0)
        return 103;
    r = curfew_run(cf); /* returns only under CURFEW_TIMEOUT_CONTINUE */
    wd_info(g_dir, "run_rc", r);
    wd_info(g_dir, "stuck_result", curfew_blocker_result(b, NULL));
    wd_info(g_dir, "complete", curfew_is_complete(cf));
    wd_info(g_dir, "destroy_rc", curfew_destroy(cf));
    return 0;
}

/* argv: dir. The dispatching thread blocks inside a trigger (W1). */
CHILD(wd_stuck)
{
    if (argc < 1)
        return 2;
    g_dir = argv[0];
    wd_child_setup(g_dir);
    sem_init(&never, 0, 0);
    char report[WD_PATH], record[WD_PATH];
    curfew_config cfg;
    child_config(&cfg, report, record, "wd-stuck");
    cfg.warn_after_ms = 100;
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.timeout_exit_code = 9;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *first = curfew_phase(cf, "first");
    curfew_barrier *second = curfew_phase(cf, "second");
    curfew_blocker q;
    if (curfew_add_blocker(first, "quick", quick_trigger, NULL, NULL) != 0 ||
        curfew_add_blocker(second, "sem", sem_trigger, NULL, NULL) != 0 ||
        curfew_add_blocker(second, "queued", NULL, NULL, &q) != 0 ||
        curfew_blocker_status(q, "queued behind sem") != 0)
        return 101;
    if (curfew_begin(cf) != 0)
        return 103;
    curfew_run(cf);
    return 104; /* never: the watchdog exits with 9 */
}

static pthread_mutex_t user_lock = PTHREAD_MUTEX_INITIALIZER;
static sem_t stdio_taken;

static void *hold_stdio(void *arg)
{
    (void)arg;
    flockfile(stderr); /* never released */
    sem_post(&stdio_taken);
    for (;;)
        pause();
    return NULL;
}

static void *want_user_lock(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&user_lock); /* blocks: the trigger holds it */
    return NULL;
}

static int lock_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&user_lock);
    curfew_blocker_status(self, "holding user_lock");
    pthread_t t;
    pthread_create(&t, NULL, want_user_lock, NULL);
    block_forever();
    return CURFEW_DONE;
}

/* argv: dir, on_timeout. The dispatching thread holds a user lock and
 * blocks; another thread holds stderr's stdio lock (W4). */
CHILD(wd_stdio_locked)
{
    if (argc < 2)
        return 2;
    g_dir = argv[0];
    wd_child_setup(g_dir);
    sem_init(&never, 0, 0);
    sem_init(&stdio_taken, 0, 0);
    char report[WD_PATH], record[WD_PATH];
    curfew_config cfg;
    child_config(&cfg, report, record, "wd-stdio");
    cfg.on_timeout = (curfew_timeout_action)atoi(argv[1]);
    cfg.timeout_exit_code = 9;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *second = curfew_phase(cf, "second");
    if (curfew_add_blocker(second, "locked", lock_trigger, NULL, NULL) != 0)
        return 101;
    /* stderr's lock is taken before the deadline, before begin even. */
    pthread_t t;
    if (pthread_create(&t, NULL, hold_stdio, NULL) != 0)
        return 102;
    while (sem_wait(&stdio_taken) != 0)
        ;
    wd_info(g_dir, "stdio_locked", 1);
    wd_info(g_dir, "before_wait_ns", wd_mono_ns());
    if (curfew_begin(cf) != 0)
        return 103;
    curfew_run(cf);
    return 104;
}

static void budget_events(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_HANG)
        wd_info(g_dir, "hang_ns", wd_mono_ns());
}

/* argv: dir, budget_ms, budget_margin_ms, nested (0/1). The first phase
 * hangs; crash_after_ms stays at its default, 60 000 ms (W5). */
CHILD(wd_budget)
{
    if (argc < 4)
        return 2;
    g_dir = argv[0];
    wd_child_setup(g_dir);
    char report[WD_PATH];
    wd_path(report, sizeof(report), g_dir, "report.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = three;
    cfg.phase_count = 3;
    cfg.budget_ms = atoi(argv[1]);
    cfg.budget_margin_ms = atoi(argv[2]);
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.timeout_exit_code = 9;
    cfg.report_path = report;
    cfg.process_name = "wd-budget";
    cfg.on_event = budget_events;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *first = curfew_phase(cf, "first");
    if (curfew_add_blocker(first, "top-stuck", NULL, NULL, NULL) != 0)
        return 101;
    if (atoi(argv[3])) {
        /* Three barriers, all past their deadline together when the
         * budget runs out (N2: the innermost is named). */
        curfew_barrier *mid, *inner;
        curfew_blocker d;
        if (curfew_barrier_create(cf, "mid", NULL, &mid) != 0 ||
            curfew_barrier_create(cf, "inner", NULL, &inner) != 0 ||
            curfew_barrier_wait_in(mid, first, "mid") != 0 ||
            curfew_barrier_wait_in(inner, mid, "inner") != 0 ||
            curfew_add_blocker(mid, "mid-stuck", NULL, NULL, NULL) != 0 ||
            curfew_add_blocker(inner, "deep", NULL, NULL, &d) != 0 ||
            curfew_blocker_status(d, "deep down") != 0)
            return 102;
    }
    wd_info(g_dir, "begin_ns", wd_mono_ns());
    if (curfew_begin(cf) != 0)
        return 103;
    curfew_run(cf);
    return 104;
}

/* argv: dir, budget_ms, budget_margin_ms, mode: "no-dispatch" (nobody
 * ever dispatches after curfew_begin) or "stuck-event" (the dispatching
 * thread blocks in the PHASE_END event of "first", between two phases).
 * Either way no barrier is waiting when the budget runs out (W1, W5). */
static void stuck_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_HANG)
        wd_info(g_dir, "hang_ns", wd_mono_ns());
    if (ev->type == CURFEW_EV_PHASE_END && ev->phase &&
        strcmp(ev->phase, "first") == 0) {
        wd_info(g_dir, "stuck_ns", wd_mono_ns());
        block_forever();
    }
}

CHILD(wd_budget_stuck)
{
    if (argc < 4)
        return 2;
    g_dir = argv[0];
    wd_child_setup(g_dir);
    sem_init(&never, 0, 0);
    char report[WD_PATH];
    wd_path(report, sizeof(report), g_dir, "report.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = three;
    cfg.phase_count = 3;
    cfg.budget_ms = atoi(argv[1]);
    cfg.budget_margin_ms = atoi(argv[2]);
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.timeout_exit_code = 9;
    cfg.report_path = report;
    cfg.process_name = "wd-budget";
    cfg.on_event = stuck_event;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    if (curfew_add_blocker(curfew_phase(cf, "second"), "never-started", NULL,
                           NULL, NULL) != 0)
        return 101;
    wd_info(g_dir, "begin_ns", wd_mono_ns());
    if (curfew_begin(cf) != 0)
        return 103;
    if (strcmp(argv[3], "no-dispatch") == 0)
        block_forever();
    curfew_run(cf);
    return 104;
}

static int ready_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    curfew_blocker_status(self, "inner work");
    wd_info(g_dir, "ready_ns", wd_mono_ns());
    return CURFEW_PENDING;
}

/* argv: dir. "work" (crash 1000 ms) holds the nested barrier "svc" (crash
 * 1100 ms); the parent stops the process past both deadlines (N2). */
CHILD(wd_nested_late)
{
    if (argc < 1)
        return 2;
    g_dir = argv[0];
    wd_child_setup(g_dir);
    static const curfew_phase_config phases[] = {{"work", 0, 1000},
                                                 {"after", 0, 0}};
    char report[WD_PATH];
    wd_path(report, sizeof(report), g_dir, "report.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 2;
    cfg.warn_after_ms = CURFEW_NEVER;
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.timeout_exit_code = 9;
    cfg.report_path = report;
    cfg.process_name = "wd-nested";
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *work = curfew_phase(cf, "work"), *svc;
    curfew_barrier_config bc = {CURFEW_NEVER, 1100};
    if (curfew_barrier_create(cf, "svc", &bc, &svc) != 0 ||
        curfew_add_blocker(work, "work-stuck", NULL, NULL, NULL) != 0 ||
        curfew_barrier_wait_in(svc, work, "svc") != 0 ||
        curfew_add_blocker(svc, "svc-stuck", ready_trigger, NULL, NULL) != 0)
        return 101;
    if (curfew_begin(cf) != 0)
        return 103;
    curfew_run(cf);
    return 104;
}

/* ---- parent side -----------------------------------------------------------
 */

static int64_t ms_between(int64_t from_ns, int64_t to_ns)
{
    return (to_ns - from_ns) / 1000000;
}

/* The report is on descriptor 2 as exactly one line, the same bytes as the
 * report file (W3). Returns the parsed line. */
static curfew__jval *check_stderr_copy(const char *dir)
{
    char path[WD_PATH];
    size_t flen, elen, llen;
    wd_path(path, sizeof(path), dir, "report.json");
    char *file = wd_read_file(path, &flen);
    CHECK(file != NULL);
    wd_path(path, sizeof(path), dir, "stderr");
    char *err = wd_read_file(path, &elen);
    CHECK(err != NULL);
    const char *line;
    CHECK_EQ(wd_lines(err, HANG_PREFIX, &line, &llen), 1);
    CHECK(flen > 0 && file[flen - 1] == '\n');
    CHECK_EQ(llen, flen - 1); /* one line: no newline inside */
    CHECK(memcmp(line, file, llen) == 0);
    curfew__jval *v = wd_parse_text(line, llen, "the report on stderr");
    free(file);
    free(err);
    return v;
}

/* R1: every key of the hang report of the wd_hang child. */
static void check_r1(const char *dir, pid_t pid)
{
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report.json");
    curfew__jval *rep = wd_parse_file(path);
    CHECK_STR(wd_jstr(rep, "type"), "curfew-hang");
    CHECK_EQ(wd_jint(rep, "version"), 1);
    CHECK_EQ(wd_jint(rep, "pid"), pid);
    CHECK_STR(wd_jstr(rep, "process"), "wd-hang");
    CHECK_STR(wd_jstr(rep, "phase"), "second");
    const curfew__jval *bp = wd_jget(rep, "barrier_path", CURFEW__J_ARR);
    CHECK_EQ(bp->n, 1);
    CHECK_STR(wd_jat_str(bp, 0), "second");
    int64_t elapsed = wd_jint(rep, "elapsed_ms");
    if (elapsed < HANG_MS || elapsed > HANG_MS + SLACK_MS)
        th_fail(__FILE__, __LINE__, "elapsed_ms %" PRId64 ", expected %d-%d",
                elapsed, HANG_MS, HANG_MS + SLACK_MS);
    CHECK_EQ(wd_jint(rep, "timeout_ms"), HANG_MS);

    /* conditions: the pending blocker, its status (B7) and call site (B1) */
    const curfew__jval *conds = wd_jget(rep, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    const curfew__jval *c = &conds->items[0];
    CHECK_STR(wd_jstr(c, "name"), "stuck");
    CHECK_STR(wd_jstr(c, "status"), "waiting for the disk");
    CHECK_STR(wd_jstr(c, "file"), __FILE__);
    CHECK_EQ(wd_jint(c, "line"), wd_info_need(dir, "stuck_line"));
    CHECK_STR(wd_jstr(c, "function"), "child_wd_hang");
    /* age_ms counts from the trigger, which ran a little after the
     * barrier started (after the record's rewrite): elapsed - age is that
     * gap, at most the time from before_wait_ns to the trigger (+ 2 for
     * the two values' rounding to ms). */
    int64_t age = wd_jint(c, "age_ms");
    int64_t gap = ms_between(wd_info_need(dir, "before_wait_ns"),
                             wd_info_need(dir, "stuck_ns"));
    if (age > elapsed || age < elapsed - gap - 2)
        th_fail(__FILE__, __LINE__,
                "age_ms %" PRId64 ", elapsed_ms %" PRId64
                ", the trigger ran at most %" PRId64 " ms after the barrier "
                "started",
                age, elapsed, gap);
    CHECK_STR(wd_jstr(c, "barrier"), "second");

    /* broken_registrations: the add with a NULL name (B5) */
    CHECK_EQ(wd_info_need(dir, "broken_rc"), -EINVAL);
    const curfew__jval *br =
        wd_jget(rep, "broken_registrations", CURFEW__J_ARR);
    CHECK_EQ(br->n, 1);
    CHECK_STR(wd_jstr(&br->items[0], "name"), "(null)");
    CHECK(strncmp(wd_jstr(&br->items[0], "error"), "-EINVAL", 7) == 0);
    CHECK_STR(wd_jstr(&br->items[0], "file"), __FILE__);
    CHECK_EQ(wd_jint(&br->items[0], "line"), wd_info_need(dir, "broken_line"));

    /* phases: the completed ones only, with their durations */
    const curfew__jval *ph = wd_jget(rep, "phases", CURFEW__J_ARR);
    CHECK_EQ(ph->n, 1);
    CHECK_STR(wd_jstr(&ph->items[0], "name"), "first");
    int64_t d = wd_jint(&ph->items[0], "duration_ms");
    CHECK(d >= QUICK_MS - 1 && d < 5000);

    CHECK_EQ(wd_jget(rep, "children", CURFEW__J_ARR)->n, 0);

    curfew__jval *line = check_stderr_copy(dir);
    CHECK_EQ(wd_jint(line, "pid"), pid);
    curfew__json_free(line);
    curfew__json_free(rep);
}

/* The hang was reported (the hang event runs right after the report is
 * written) within HANG_MS + SLACK_MS of the barrier starting to wait. */
static void check_hang_time(const char *dir)
{
    int64_t hang_ns = wd_info_need(dir, "hang_ns");
    int64_t hang = ms_between(wd_info_need(dir, "wait_ns"), hang_ns);
    int64_t early = ms_between(wd_info_need(dir, "before_wait_ns"), hang_ns);
    /* - 1: the barrier's start is kept in whole ms */
    if (early < HANG_MS - 1 || hang > HANG_MS + SLACK_MS + WRITE_SLACK_MS)
        th_fail(__FILE__, __LINE__,
                "hang reported %" PRId64 "-%" PRId64
                " ms after the wait began, expected %d-%d",
                hang, early, HANG_MS, HANG_MS + SLACK_MS + WRITE_SLACK_MS);
}

/* The child ended after its hang event (W3: report, then the action) and
 * within EXIT_SLACK_MS of it. */
static void check_exit_time(const char *dir, int64_t t_exit_ns)
{
    int64_t wait_ns = wd_info_need(dir, "wait_ns");
    int64_t hang = ms_between(wait_ns, wd_info_need(dir, "hang_ns"));
    int64_t gone = ms_between(wait_ns, t_exit_ns);
    if (gone < hang || gone > hang + EXIT_SLACK_MS)
        th_fail(__FILE__, __LINE__,
                "child ended %" PRId64 " ms after the wait began, its hang "
                "event ran at %" PRId64 " ms; expected %" PRId64 "-%" PRId64,
                gone, hang, hang, hang + EXIT_SLACK_MS);
}

static pid_t spawn_hang(const char *dir, curfew_timeout_action act, int code)
{
    char a[16], c[16];
    snprintf(a, sizeof(a), "%d", (int)act);
    snprintf(c, sizeof(c), "%d", code);
    return th_spawn_child("wd_hang", dir, a, c, (char *)NULL);
}

/* W3 + R1: CURFEW_TIMEOUT_ABORT (the default) ends the child with SIGABRT
 * after writing the report; R2: the record left on disk says where it
 * stopped. */
TEST(wd_abort_report)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = spawn_hang(dir, CURFEW_TIMEOUT_ABORT, 0);
    int64_t t_exit;
    int st = wd_wait_exit(pid, CHILD_MS, &t_exit);
    wd_expect_signal(st, SIGABRT);
    check_r1(dir, pid);
    check_hang_time(dir);
    check_exit_time(dir, t_exit);

    /* R2: a crash leaves the last state on disk. */
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "record.json");
    curfew__jval *rec = wd_parse_file(path);
    CHECK_STR(wd_jstr(rec, "type"), "curfew-record");
    CHECK_EQ(wd_jbool(rec, "clean"), 0);
    const curfew__jval *ph = wd_jget(rec, "phases", CURFEW__J_ARR);
    CHECK_EQ(ph->n, 3);
    CHECK(!wd_jnull(&ph->items[0], "end_ms"));
    CHECK(!wd_jnull(&ph->items[1], "start_ms"));
    CHECK(wd_jnull(&ph->items[1], "end_ms"));
    const curfew__jval *bl = wd_jfind(
        wd_jget(&ph->items[1], "blockers", CURFEW__J_ARR), "name", "stuck");
    CHECK(bl != NULL);
    CHECK_STR(wd_jstr(bl, "result"), "pending");
    CHECK_EQ(wd_jget(rec, "broken_registrations", CURFEW__J_ARR)->n, 1);
    curfew__json_free(rec);
    wd_done(dir);
}

/* W3: CURFEW_TIMEOUT_EXIT with timeout_exit_code 0 exits with 70. */
TEST(wd_exit_default_code)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = spawn_hang(dir, CURFEW_TIMEOUT_EXIT, 0);
    int64_t t_exit;
    int st = wd_wait_exit(pid, CHILD_MS, &t_exit);
    wd_expect_exit(st, 70);
    check_r1(dir, pid);
    check_hang_time(dir);
    check_exit_time(dir, t_exit);
    wd_done(dir);
}

/* W3: CURFEW_TIMEOUT_EXIT with timeout_exit_code 9 exits with 9. */
TEST(wd_exit_code_9)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = spawn_hang(dir, CURFEW_TIMEOUT_EXIT, 9);
    int64_t t_exit;
    int st = wd_wait_exit(pid, CHILD_MS, &t_exit);
    wd_expect_exit(st, 9);
    check_r1(dir, pid);
    check_hang_time(dir);
    check_exit_time(dir, t_exit);
    wd_done(dir);
}

/* W3: CURFEW_TIMEOUT_CONTINUE marks the pending blocker timeout, the
 * phase completes, the shutdown goes on to the end; curfew_run returns 0
 * (D2) and the child exits 0. */
TEST(wd_continue)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = spawn_hang(dir, CURFEW_TIMEOUT_CONTINUE, 0);
    int st = wd_wait_exit(pid, CHILD_MS, NULL);
    wd_expect_exit(st, 0);
    check_r1(dir, pid);
    check_hang_time(dir);
    CHECK_EQ(wd_info_need(dir, "run_rc"), 0);
    CHECK_EQ(wd_info_need(dir, "stuck_result"), CURFEW_RESULT_TIMEOUT);
    CHECK_EQ(wd_info_need(dir, "complete"), 1);
    CHECK_EQ(wd_info_need(dir, "destroy_rc"), 0);

    /* R2: the final record says the blocker timed out. */
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "record.json");
    curfew__jval *rec = wd_parse_file(path);
    CHECK_EQ(wd_jbool(rec, "clean"), 1);
    const curfew__jval *ph = wd_jget(rec, "phases", CURFEW__J_ARR);
    CHECK_EQ(ph->n, 3);
    const curfew__jval *bl = wd_jfind(
        wd_jget(&ph->items[1], "blockers", CURFEW__J_ARR), "name", "stuck");
    CHECK(bl != NULL);
    CHECK_STR(wd_jstr(bl, "result"), "timeout");
    curfew__json_free(rec);
    wd_done(dir);
}

/* W1: the dispatching thread is blocked for good inside a trigger; the
 * watchdog still warns on stderr (D4), reports on time and exits per
 * policy. Blockers not triggered yet are listed with their age since the
 * barrier started (R1). */
TEST(wd_stuck_dispatcher)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = th_spawn_child("wd_stuck", dir, (char *)NULL);
    int64_t t_exit;
    int st = wd_wait_exit(pid, CHILD_MS, &t_exit);
    wd_expect_exit(st, 9);
    check_hang_time(dir);
    check_exit_time(dir, t_exit);

    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report.json");
    curfew__jval *rep = wd_parse_file(path);
    CHECK_EQ(wd_jint(rep, "pid"), pid);
    CHECK_STR(wd_jstr(rep, "phase"), "second");
    int64_t elapsed = wd_jint(rep, "elapsed_ms");
    CHECK(elapsed >= HANG_MS && elapsed <= HANG_MS + SLACK_MS);
    const curfew__jval *conds = wd_jget(rep, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 2);
    const curfew__jval *s = wd_jfind(conds, "name", "sem");
    const curfew__jval *q = wd_jfind(conds, "name", "queued");
    CHECK(s != NULL && q != NULL);
    CHECK_STR(wd_jstr(s, "status"), "in sem_wait, nobody posts");
    CHECK_STR(wd_jstr(q, "status"), "queued behind sem");
    CHECK(wd_jint(q, "age_ms") == elapsed); /* never triggered */
    curfew__json_free(rep);
    curfew__json_free(check_stderr_copy(dir));

    /* The warning reached stderr from the watchdog thread; the warning
     * event could not: it belongs to the stuck dispatching thread. */
    wd_path(path, sizeof(path), dir, "stderr");
    char *err = wd_read_file(path, NULL);
    const char *line;
    size_t llen;
    CHECK_EQ(wd_lines(err, WARN_PREFIX, &line, &llen), 1);
    char *w = strndup(line, llen);
    CHECK(strstr(w, "\"second\"") != NULL);
    CHECK(strstr(w, "sem (in sem_wait, nobody posts)") != NULL);
    CHECK(strstr(w, "queued (queued behind sem)") != NULL);
    free(w);
    free(err);
    int64_t ignored;
    CHECK(!wd_info_get(dir, "warning_event", &ignored));
    wd_done(dir);
}

static void run_stdio_locked(curfew_timeout_action act)
{
    char dir[WD_PATH], a[16];
    wd_tmpdir(dir, sizeof(dir));
    snprintf(a, sizeof(a), "%d", (int)act);
    pid_t pid = th_spawn_child("wd_stdio_locked", dir, a, (char *)NULL);
    if (wd_tsan()) {
        /* TSan's _exit and abort interceptors fflush(stderr) first and
         * block on the lock this test holds: curfew's report is checked,
         * the ending is not. */
        int64_t hang = 0, end = th_now_ms() + CHILD_MS;
        while (!wd_info_get(dir, "hang_ns", &hang) && th_now_ms() < end)
            th_sleep_ms(5);
        th_sleep_ms(100);
        kill(pid, SIGKILL);
        (void)wd_wait_exit(pid, CHILD_MS, NULL);
    } else {
        int64_t t_exit;
        int st = wd_wait_exit(pid, CHILD_MS, &t_exit);
        if (act == CURFEW_TIMEOUT_ABORT)
            wd_expect_signal(st, SIGABRT);
        else
            wd_expect_exit(st, 9);
        check_exit_time(dir, t_exit);
    }
    CHECK_EQ(wd_info_need(dir, "stdio_locked"), 1);
    check_hang_time(dir);
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report.json");
    curfew__jval *rep = wd_parse_file(path);
    CHECK_STR(wd_jstr(rep, "type"), "curfew-hang");
    const curfew__jval *conds = wd_jget(rep, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    CHECK_STR(wd_jstr(&conds->items[0], "status"), "holding user_lock");
    curfew__json_free(rep);
    curfew__json_free(check_stderr_copy(dir));
    wd_done(dir);
}

/* W4: with stderr's stdio lock held by another thread for good and the
 * dispatching thread blocked while holding a user lock, the report still
 * reaches report_path and descriptor 2, and _exit follows. */
TEST(wd_stdio_locked_exit)
{
    run_stdio_locked(CURFEW_TIMEOUT_EXIT);
}

/* W4: the same under CURFEW_TIMEOUT_ABORT: abort() must not wait for the
 * stdio lock either. */
TEST(wd_stdio_locked_abort)
{
    run_stdio_locked(CURFEW_TIMEOUT_ABORT);
}

static curfew__jval *run_budget(const char *dir, int budget, int margin,
                                int nested, pid_t *pid_out)
{
    char b[16], m[16], n[16];
    snprintf(b, sizeof(b), "%d", budget);
    snprintf(m, sizeof(m), "%d", margin);
    snprintf(n, sizeof(n), "%d", nested);
    pid_t pid = th_spawn_child("wd_budget", dir, b, m, n, (char *)NULL);
    int64_t t_exit;
    int st = wd_wait_exit(pid, CHILD_MS, &t_exit);
    wd_expect_exit(st, 9);
    int at = budget - (margin ? margin : 500);
    int64_t begin_ns = wd_info_need(dir, "begin_ns");
    int64_t hang = ms_between(begin_ns, wd_info_need(dir, "hang_ns"));
    int64_t gone = ms_between(begin_ns, t_exit);
    if (hang < at - 2 || hang > at + SLACK_MS + WRITE_SLACK_MS || gone < hang ||
        gone > hang + EXIT_SLACK_MS)
        th_fail(__FILE__, __LINE__,
                "budget %d, margin %d: reported after %" PRId64
                " ms, exited after %" PRId64 " ms; expected a report at "
                "%d-%d and the exit within %d ms of it",
                budget, margin, hang, gone, at, at + SLACK_MS + WRITE_SLACK_MS,
                EXIT_SLACK_MS);
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report.json");
    curfew__jval *rep = wd_parse_file(path);
    CHECK_EQ(wd_jint(rep, "pid"), pid);
    CHECK_STR(wd_jstr(rep, "phase"), "first");
    /* The deadline is the budget's, counted from begin; the barrier
     * started waiting a little after begin (how long depends on the load),
     * so its own timeout_ms is a little shorter. */
    int64_t timeout = wd_jint(rep, "timeout_ms");
    CHECK(timeout > 0 && timeout <= at);
    CHECK(wd_jint(rep, "elapsed_ms") >= timeout);
    CHECK(wd_jint(rep, "elapsed_ms") <= timeout + SLACK_MS);
    if (pid_out)
        *pid_out = pid;
    return rep;
}

/* The budgets below act 1500 ms after curfew_begin: the barriers must be
 * waiting by then, and on a loaded machine (TSan, 2 cores) the dispatching
 * thread has been seen to start the first phase 590 ms after the begin. */

/* W5: budget 1800 with margin 300 acts at 1500 ms although crash_after_ms
 * is its default, 60 000. */
TEST(wd_budget_margin)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    curfew__jval *rep = run_budget(dir, 1800, 300, 0, NULL);
    const curfew__jval *bp = wd_jget(rep, "barrier_path", CURFEW__J_ARR);
    CHECK_EQ(bp->n, 1);
    CHECK_STR(wd_jat_str(bp, 0), "first");
    const curfew__jval *conds = wd_jget(rep, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    CHECK_STR(wd_jstr(&conds->items[0], "name"), "top-stuck");
    curfew__json_free(rep);
    wd_done(dir);
}

/* W5: budget_margin_ms 0 means 500: budget 2000 acts at 1500 ms. */
TEST(wd_budget_default_margin)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    curfew__json_free(run_budget(dir, 2000, 0, 0, NULL));
    wd_done(dir);
}

/* N2 + W5: when the budget runs out, three nested barriers are past their
 * deadline at once; the report names the innermost with its path, and its
 * conditions are that barrier's pending blockers. */
TEST(wd_budget_innermost)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    curfew__jval *rep = run_budget(dir, 1800, 300, 1, NULL);
    const curfew__jval *bp = wd_jget(rep, "barrier_path", CURFEW__J_ARR);
    CHECK_EQ(bp->n, 3);
    CHECK_STR(wd_jat_str(bp, 0), "first");
    CHECK_STR(wd_jat_str(bp, 1), "mid");
    CHECK_STR(wd_jat_str(bp, 2), "inner");
    const curfew__jval *conds = wd_jget(rep, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    CHECK_STR(wd_jstr(&conds->items[0], "name"), "deep");
    CHECK_STR(wd_jstr(&conds->items[0], "status"), "deep down");
    CHECK_STR(wd_jstr(&conds->items[0], "barrier"), "inner");
    curfew__json_free(rep);
    wd_done(dir);
}

static void run_budget_stuck(const char *mode)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = th_spawn_child("wd_budget_stuck", dir, "800", "300", mode,
                               (char *)NULL);
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report.json");
    /* Give it 5 s, ten times the budget's deadline, so that a failure can
     * say what happened instead of timing out. */
    int64_t begin = 0, end = th_now_ms() + 5000;
    int st = 0;
    pid_t r = 0;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && th_now_ms() < end)
        th_sleep_ms(1);
    int64_t t_exit = wd_mono_ns();
    if (r == 0) {
        kill(pid, SIGKILL);
        (void)wd_wait_exit(pid, CHILD_MS, NULL);
        th_fail(__FILE__, __LINE__,
                "%s: budget 800 ms, margin 300: after 5000 ms the child still "
                "ran and had %s a hang report",
                mode, access(path, F_OK) == 0 ? "written" : "not written");
    }
    wd_expect_exit(st, 9);
    CHECK(wd_info_get(dir, "begin_ns", &begin));
    int64_t hang = ms_between(begin, wd_info_need(dir, "hang_ns"));
    int64_t gone = ms_between(begin, t_exit);
    if (hang < 500 - 2 || hang > 500 + SLACK_MS + WRITE_SLACK_MS ||
        gone < hang || gone > hang + EXIT_SLACK_MS)
        th_fail(__FILE__, __LINE__,
                "%s: reported after %" PRId64 " ms, exited after %" PRId64
                " ms; expected a report at 500-%d and the exit within %d ms "
                "of it",
                mode, hang, gone, 500 + SLACK_MS + WRITE_SLACK_MS,
                EXIT_SLACK_MS);
    curfew__jval *rep = wd_parse_file(path);
    CHECK_STR(wd_jstr(rep, "type"), "curfew-hang");
    CHECK_EQ(wd_jint(rep, "pid"), pid);
    curfew__json_free(rep);
    wd_done(dir);
}

/* W1 + W5: nobody dispatches after curfew_begin (the loop that should is
 * stuck), so no barrier ever starts waiting; the budget must still be
 * enforced: a report before the outside SIGKILL, then the policy. */
TEST(wd_budget_no_dispatch)
{
    run_budget_stuck("no-dispatch");
}

/* W1 + W5: the dispatching thread blocks in an event callback between two
 * phases, when no barrier is waiting; the budget must still be enforced. */
TEST(wd_budget_stuck_between_phases)
{
    run_budget_stuck("stuck-event");
}

/* N2: "work" (crash 1000 ms) and its nested "svc" (crash 1100 ms, so its
 * own deadline comes later) are both past their deadlines when the
 * watchdog next looks, because the process was stopped meanwhile: the
 * report names the innermost, "svc", with its path. */
TEST(wd_nested_innermost_named)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = th_spawn_child("wd_nested_late", dir, (char *)NULL);
    int64_t ready = 0;
    for (int i = 0; i < 5000 && !wd_info_get(dir, "ready_ns", &ready); i++)
        th_sleep_ms(1);
    CHECK(ready != 0);
    CHECK_EQ(kill(pid, SIGSTOP), 0);
    int st;
    CHECK_EQ(waitpid(pid, &st, WUNTRACED), pid);
    CHECK(WIFSTOPPED(st));
    int64_t stopped_at = ms_between(ready, wd_mono_ns());
    if (stopped_at >= 900)
        th_fail(__FILE__, __LINE__,
                "could not stop the child before its first deadline (%" PRId64
                " ms)",
                stopped_at);
    while (ms_between(ready, wd_mono_ns()) < 1400)
        th_sleep_ms(10);
    CHECK_EQ(kill(pid, SIGCONT), 0);
    st = wd_wait_exit(pid, CHILD_MS, NULL);
    wd_expect_exit(st, 9);
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report.json");
    curfew__jval *rep = wd_parse_file(path);
    CHECK_STR(wd_jstr(rep, "phase"), "work");
    const curfew__jval *bp = wd_jget(rep, "barrier_path", CURFEW__J_ARR);
    CHECK_EQ(bp->n, 2);
    CHECK_STR(wd_jat_str(bp, 0), "work");
    CHECK_STR(wd_jat_str(bp, 1), "svc");
    CHECK_EQ(wd_jint(rep, "timeout_ms"), 1100);
    const curfew__jval *conds = wd_jget(rep, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    CHECK_STR(wd_jstr(&conds->items[0], "name"), "svc-stuck");
    CHECK_STR(wd_jstr(&conds->items[0], "barrier"), "svc");
    curfew__json_free(rep);
    wd_done(dir);
}

/* ---- in-process: threads
 * ------------------------------------------------------ */

static int wait_tasks(int want, int64_t ms)
{
    int64_t end = th_now_ms() + ms;
    int n;
    while ((n = wd_task_count()) != want && th_now_ms() < end)
        th_sleep_ms(2);
    return n;
}

static int pending_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_PENDING;
}

/* C6 + W1: no thread before curfew_begin; curfew_begin starts exactly one
 * (the watchdog); after curfew_destroy it is gone. */
TEST(wd_c6_threads)
{
    wd_warm_threads();
    int base = wd_task_count();
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    curfew_blocker b;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "w", pending_trigger,
                                NULL, &b),
             0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_done(b), 0); /* before begin: no thread */
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "drain"), "w2",
                                pending_trigger, NULL, &b),
             0);
    th_sleep_ms(50);
    CHECK_EQ(wd_task_count(), base);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(wait_tasks(base + 1, 10000), base + 1);
    CHECK_EQ(curfew_dispatch(cf), 0);
    CHECK_EQ(curfew_blocker_done(b), 0);
    int64_t end = th_now_ms() + 5000;
    while (curfew_dispatch(cf) == 0 && th_now_ms() < end)
        th_sleep_ms(1);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(wd_task_count(), base + 1); /* complete, not destroyed */
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(wait_tasks(base, 10000), base);

    /* A coordinator destroyed without a shutdown never had a thread. */
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(wd_task_count(), base);
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(wd_task_count(), base);
}

/* W1: the watchdog sleeps until the next deadline; it does not tick. Over
 * two seconds with the only deadline 10 s away, its thread barely runs. */
TEST(wd_no_tick)
{
    wd_warm_threads();
    int before[256], after[256];
    int nb = wd_task_ids(before, 256);
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.warn_after_ms = CURFEW_NEVER;
    cfg.crash_after_ms = 10000;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_blocker b;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "w",
                                pending_trigger, NULL, &b),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_dispatch(cf), 0);
    th_sleep_ms(50);
    int na = wd_task_ids(after, 256), wd = 0;
    for (int i = 0; i < na; i++) {
        int known = 0;
        for (int j = 0; j < nb; j++)
            known |= after[i] == before[j];
        if (!known) {
            CHECK_EQ(wd, 0); /* exactly one new thread */
            wd = after[i];
        }
    }
    CHECK(wd != 0);
    /* Its start and the first phase wake it: on a loaded machine that may
     * still go on after 50 ms. Count from when it has gone to sleep: no
     * switch over 100 ms (at most 2 s of trying; a watchdog that ticks
     * faster never settles, and the count below catches it). */
    int64_t s0 = wd_ctx_switches(wd), settle_end = th_now_ms() + 2000;
    for (;;) {
        th_sleep_ms(100);
        int64_t s = wd_ctx_switches(wd);
        if (s == s0 || th_now_ms() > settle_end)
            break;
        s0 = s;
    }
    s0 = wd_ctx_switches(wd);
    th_sleep_ms(2000);
    int64_t s1 = wd_ctx_switches(wd);
    CHECK(s0 >= 0 && s1 >= 0);
    if (s1 - s0 > 3)
        th_fail(__FILE__, __LINE__,
                "the watchdog ran %" PRId64 " times in 2 s with no deadline",
                s1 - s0);
    CHECK_EQ(curfew_blocker_done(b), 0);
    int64_t end = th_now_ms() + 5000;
    while (curfew_dispatch(cf) == 0 && th_now_ms() < end)
        th_sleep_ms(1);
    CHECK_EQ(curfew_destroy(cf), 0);
}
