/* Warnings and nested barrier timers: CONTRACT.md W2, D4 (which thread
 * runs which event, warnings on stderr) and N2 (every barrier has its own
 * timers; under CURFEW_TIMEOUT_CONTINUE only the timed-out barrier
 * completes).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "wd_util.h"

#include <curfew/core.h>

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* Timers fire within their deadline + SLACK_MS: the watchdog wakes at the
 * deadline (W1), but on a loaded 2-core machine, under TSan, its thread may
 * wait that long for a CPU and a report's write for the disk. */
#define SLACK_MS 300
/* The hang event runs after the report (and the record, when there is
 * one) was written with fsync: its times may be WRITE_SLACK_MS later still
 * on a loaded machine's disk. */
#define WRITE_SLACK_MS 700
#define WARN_PREFIX "curfew: warning: "

/* One event as seen by the callback, copied (the strings live only during
 * the call). */
typedef struct seen {
    curfew_event_type type;
    int on_dispatcher; /* ran on the thread that called curfew_run */
    int64_t elapsed_ms, duration_ms;
    char phase[64], barrier[64], text[1024];
    /* N2: states when the hang event ran (before the on_timeout action) */
    int svc_state, work_state, svc_result, work_result;
} seen;

#define MAX_SEEN 64

static struct {
    pthread_mutex_t lock;
    pthread_t dispatcher;
    seen ev[MAX_SEEN];
    int n;
    /* wd_nested_continue */
    const char *dir;
    curfew_barrier *svc, *work;
    curfew_blocker svc_blocker, work_blocker;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "(null)");
}

/* Copies the report file as it is now to report-N.json. */
static void keep_report(int n)
{
    char from[WD_PATH], name[32];
    wd_path(from, sizeof(from), g.dir, "report.json");
    snprintf(name, sizeof(name), "report-%d.json", n);
    size_t len;
    char *text = wd_read_file(from, &len);
    if (text)
        wd_put_file(g.dir, name, text, len);
    free(text);
}

static void record_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.lock);
    if (g.n < MAX_SEEN) {
        seen *s = &g.ev[g.n++];
        s->type = ev->type;
        s->on_dispatcher = pthread_equal(pthread_self(), g.dispatcher);
        s->elapsed_ms = ev->elapsed_ms;
        s->duration_ms = ev->duration_ms;
        copy(s->phase, sizeof(s->phase), ev->phase);
        copy(s->barrier, sizeof(s->barrier), ev->barrier);
        copy(s->text, sizeof(s->text), ev->text);
        if (ev->type == CURFEW_EV_HANG && g.svc) {
            s->svc_state = curfew_barrier_state(g.svc);
            s->work_state = curfew_barrier_state(g.work);
            s->svc_result = curfew_blocker_result(g.svc_blocker, NULL);
            s->work_result = curfew_blocker_result(g.work_blocker, NULL);
            int hangs = 0;
            for (int i = 0; i < g.n; i++)
                hangs += g.ev[i].type == CURFEW_EV_HANG;
            keep_report(hangs);
        }
    }
    pthread_mutex_unlock(&g.lock);
}

/* The hang event's duration_ms (how long the barrier waited, measured
 * after the report was written) is within the deadline + SLACK_MS +
 * WRITE_SLACK_MS. */
static void within(int64_t waited, int64_t deadline, const char *what)
{
    if (waited < deadline || waited > deadline + SLACK_MS + WRITE_SLACK_MS)
        th_fail(__FILE__, __LINE__,
                "%s after %" PRId64 " ms, expected %" PRId64 "-%" PRId64, what,
                waited, deadline, deadline + SLACK_MS + WRITE_SLACK_MS);
}

static int count(curfew_event_type type, const seen **first)
{
    int n = 0;
    *first = NULL;
    for (int i = 0; i < g.n; i++) {
        if (g.ev[i].type != type)
            continue;
        if (!n)
            *first = &g.ev[i];
        n++;
    }
    return n;
}

static int done_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_DONE;
}

/* argv: dir. warn 100 ms, crash 600 ms, CONTINUE; "first" waits for two
 * blockers that never finish and a nested barrier (its own timers off)
 * whose blocker never finishes. Writes what it saw to dir/info and
 * dir/warning.txt. */
CHILD(wd_warn)
{
    if (argc < 1)
        return 2;
    const char *dir = argv[0];
    wd_child_setup(dir);
    g.dispatcher = pthread_self();
    static const curfew_phase_config phases[] = {{"first", 0, 0},
                                                 {"second", 0, 0}};
    char report[WD_PATH];
    wd_path(report, sizeof(report), dir, "report.json");
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 2;
    cfg.warn_after_ms = 100;
    cfg.crash_after_ms = 600;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.report_path = report;
    cfg.process_name = "wd-warn";
    cfg.on_event = record_event;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_barrier *first = curfew_phase(cf, "first"), *svc;
    curfew_barrier_config off = {CURFEW_NEVER, CURFEW_NEVER};
    curfew_blocker a, b, c;
    if (curfew_add_blocker(first, "slow", NULL, NULL, &a) != 0 ||
        curfew_blocker_status(a, "step %d of %d", 3, 7) != 0 ||
        curfew_add_blocker(first, "fine", done_trigger, NULL, NULL) != 0 ||
        curfew_add_blocker(first, "stalled", NULL, NULL, &b) != 0 ||
        curfew_blocker_status(b, "waiting for peer") != 0 ||
        curfew_barrier_create(cf, "svc", &off, &svc) != 0 ||
        curfew_barrier_wait_in(svc, first, "svc") != 0 ||
        curfew_add_blocker(svc, "svc-job", NULL, NULL, &c) != 0 ||
        curfew_blocker_status(c, "flushing") != 0)
        return 101;
    if (curfew_begin(cf) != 0)
        return 103;
    wd_info(dir, "run_rc", curfew_run(cf));

    pthread_mutex_lock(&g.lock);
    const seen *w, *h;
    wd_info(dir, "warnings", count(CURFEW_EV_WARNING, &w));
    wd_info(dir, "hangs", count(CURFEW_EV_HANG, &h));
    if (w) {
        wd_info(dir, "warn_on_dispatcher", w->on_dispatcher);
        wd_info(dir, "warn_elapsed", w->elapsed_ms);
        wd_info(dir, "warn_barrier_ok", strcmp(w->barrier, "first") == 0);
        wd_info(dir, "warn_phase_ok", strcmp(w->phase, "first") == 0);
        wd_info(dir, "warn_index", w - g.ev);
        wd_put_file(dir, "warning.txt", w->text, strlen(w->text));
    }
    if (h) {
        wd_info(dir, "hang_on_dispatcher", h->on_dispatcher);
        wd_info(dir, "hang_elapsed", h->elapsed_ms);
        wd_info(dir, "hang_barrier_ok", strcmp(h->barrier, "first") == 0);
        wd_info(dir, "hang_index", h - g.ev);
    }
    pthread_mutex_unlock(&g.lock);
    wd_info(dir, "destroy_rc", curfew_destroy(cf));
    return 0;
}

/* W2 + D4: warn_after_ms 100 before crash_after_ms 600 under CONTINUE:
 * exactly one warning event, on the dispatching thread, naming every
 * pending blocker (nested barriers' included) with its status, before the
 * hang event, which runs on the watchdog thread; and one warning line on
 * stderr, written by the watchdog itself. */
TEST(wd_warn_before_crash)
{
    char dir[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    pid_t pid = th_spawn_child("wd_warn", dir, (char *)NULL);
    int st = wd_wait_exit(pid, 10000, NULL);
    wd_expect_exit(st, 0);
    CHECK_EQ(wd_info_need(dir, "run_rc"), 0);
    CHECK_EQ(wd_info_need(dir, "destroy_rc"), 0);

    CHECK_EQ(wd_info_need(dir, "warnings"), 1);
    CHECK_EQ(wd_info_need(dir, "warn_on_dispatcher"), 1);
    CHECK_EQ(wd_info_need(dir, "warn_barrier_ok"), 1);
    CHECK_EQ(wd_info_need(dir, "warn_phase_ok"), 1);
    int64_t we = wd_info_need(dir, "warn_elapsed");
    CHECK(we >= 100 && we < 600);

    CHECK_EQ(wd_info_need(dir, "hangs"), 1);
    CHECK_EQ(wd_info_need(dir, "hang_on_dispatcher"), 0);
    CHECK_EQ(wd_info_need(dir, "hang_barrier_ok"), 1);
    int64_t he = wd_info_need(dir, "hang_elapsed");
    CHECK(he >= 600 && he <= 600 + SLACK_MS + WRITE_SLACK_MS);
    CHECK(wd_info_need(dir, "warn_index") < wd_info_need(dir, "hang_index"));

    /* The event's text: one "name (status)" a line, pending ones only. */
    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "warning.txt");
    char *text = wd_read_file(path, NULL);
    CHECK(text != NULL);
    CHECK(strstr(text, "slow (step 3 of 7)") != NULL);
    CHECK(strstr(text, "stalled (waiting for peer)") != NULL);
    CHECK(strstr(text, "svc-job (flushing)") != NULL);
    CHECK(strstr(text, "fine") == NULL);
    CHECK_EQ(wd_lines(text, "", NULL, NULL), 3);
    free(text);

    /* stderr: exactly one warning line, with the same blockers. */
    wd_path(path, sizeof(path), dir, "stderr");
    char *err = wd_read_file(path, NULL);
    CHECK(err != NULL);
    const char *line;
    size_t llen;
    CHECK_EQ(wd_lines(err, WARN_PREFIX, &line, &llen), 1);
    char *w = strndup(line, llen);
    CHECK(strstr(w, "wd-warn[") != NULL);
    CHECK(strstr(w, "\"first\"") != NULL);
    CHECK(strstr(w, "slow (step 3 of 7)") != NULL);
    CHECK(strstr(w, "stalled (waiting for peer)") != NULL);
    CHECK(strstr(w, "svc-job (flushing)") != NULL);
    const char *waited = strstr(w, "has waited ");
    CHECK(waited != NULL);
    long ms = strtol(waited + strlen("has waited "), NULL, 10);
    CHECK(ms >= 100 && ms <= 100 + SLACK_MS);
    free(w);
    CHECK_EQ(wd_lines(err, "{\"type\":\"curfew-hang\"", NULL, NULL), 1);
    free(err);
    wd_done(dir);
}

/* N2: a nested barrier "svc" with its own short timers (warn 100, crash
 * 600) inside the phase "work" with a long crash timer (1500) and no
 * warning. Under CONTINUE the watchdog first names [work, svc]; only svc
 * completes (its blocker timed out), "work" keeps waiting for its own
 * blocker until its own deadline, when a second report names [work]. */
TEST(wd_nested_continue)
{
    char dir[WD_PATH], report[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    wd_path(report, sizeof(report), dir, "report.json");
    g.dir = dir;
    g.dispatcher = pthread_self();
    static const curfew_phase_config phases[] = {{"work", CURFEW_NEVER, 1500},
                                                 {"after", 0, 0}};
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 2;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.report_path = report;
    cfg.on_event = record_event;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    g.work = curfew_phase(cf, "work");
    curfew_barrier_config bc = {100, 600};
    CHECK_EQ(curfew_barrier_create(cf, "svc", &bc, &g.svc), 0);
    CHECK_EQ(curfew_barrier_wait_in(g.svc, g.work, "svc"), 0);
    CHECK_EQ(curfew_add_blocker(g.svc, "svc-stuck", NULL, NULL, &g.svc_blocker),
             0);
    CHECK_EQ(
        curfew_add_blocker(g.work, "work-stuck", NULL, NULL, &g.work_blocker),
        0);
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);

    pthread_mutex_lock(&g.lock);
    const seen *w, *h1;
    /* The nested barrier's own warning timer; the phase has none. */
    CHECK_EQ(count(CURFEW_EV_WARNING, &w), 1);
    CHECK_STR(w->barrier, "svc");
    CHECK_STR(w->phase, "work");
    CHECK(w->elapsed_ms >= 100 && w->elapsed_ms < 600);
    CHECK(strstr(w->text, "svc-stuck") != NULL);
    CHECK(strstr(w->text, "work-stuck") == NULL);

    CHECK_EQ(count(CURFEW_EV_HANG, &h1), 2);
    const seen *h2 = h1 + 1;
    while (h2->type != CURFEW_EV_HANG)
        h2++;
    /* First the inner barrier, at its own deadline. */
    CHECK_STR(h1->barrier, "svc");
    within(h1->duration_ms, 600, "svc's hang");
    CHECK_EQ(h1->svc_state, CURFEW_WAITING);
    CHECK_EQ(h1->svc_result, CURFEW_RESULT_PENDING);
    CHECK_EQ(h1->work_result, CURFEW_RESULT_PENDING);
    /* Then the phase, at its own deadline: in between, only svc completed
     * (by timeout) and the phase's own blocker was still pending. */
    CHECK_STR(h2->barrier, "work");
    within(h2->duration_ms, 1500, "work's hang");
    CHECK_EQ(h2->svc_state, CURFEW_COMPLETE);
    CHECK_EQ(h2->work_state, CURFEW_WAITING);
    CHECK_EQ(h2->svc_result, CURFEW_RESULT_TIMEOUT);
    CHECK_EQ(h2->work_result, CURFEW_RESULT_PENDING);
    pthread_mutex_unlock(&g.lock);
    CHECK_EQ(curfew_blocker_result(g.work_blocker, NULL),
             CURFEW_RESULT_TIMEOUT);

    char path[WD_PATH];
    wd_path(path, sizeof(path), dir, "report-1.json");
    curfew__jval *r1 = wd_parse_file(path);
    const curfew__jval *bp = wd_jget(r1, "barrier_path", CURFEW__J_ARR);
    CHECK_EQ(bp->n, 2);
    CHECK_STR(wd_jat_str(bp, 0), "work");
    CHECK_STR(wd_jat_str(bp, 1), "svc");
    CHECK_STR(wd_jstr(r1, "phase"), "work");
    CHECK_EQ(wd_jint(r1, "timeout_ms"), 600);
    const curfew__jval *conds = wd_jget(r1, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    CHECK_STR(wd_jstr(&conds->items[0], "name"), "svc-stuck");
    CHECK_STR(wd_jstr(&conds->items[0], "barrier"), "svc");
    curfew__json_free(r1);

    wd_path(path, sizeof(path), dir, "report-2.json");
    curfew__jval *r2 = wd_parse_file(path);
    bp = wd_jget(r2, "barrier_path", CURFEW__J_ARR);
    CHECK_EQ(bp->n, 1);
    CHECK_STR(wd_jat_str(bp, 0), "work");
    CHECK_EQ(wd_jint(r2, "timeout_ms"), 1500);
    CHECK(wd_jint(r2, "elapsed_ms") >= 1500);
    conds = wd_jget(r2, "conditions", CURFEW__J_ARR);
    CHECK_EQ(conds->n, 1);
    CHECK_STR(wd_jstr(&conds->items[0], "name"), "work-stuck");
    curfew__json_free(r2);

    CHECK_EQ(curfew_destroy(cf), 0);
    wd_done(dir);
}

/* W5 + W3: under CONTINUE, when the budget runs out the waiting barrier is
 * reported once; it and every barrier started after it complete at once by
 * timeout, without another report or hang event, and the shutdown ends
 * right after the budget's deadline (within DONE_SLACK_MS of the report:
 * completing the phases rewrites the record each time, which a loaded
 * machine's disk can make slow; their own timers are 60 s). */
#define DONE_SLACK_MS 1000
TEST(wd_budget_continue)
{
    char dir[WD_PATH], report[WD_PATH], record[WD_PATH];
    wd_tmpdir(dir, sizeof(dir));
    wd_path(report, sizeof(report), dir, "report.json");
    wd_path(record, sizeof(record), dir, "record.json");
    g.dispatcher = pthread_self();
    static const curfew_phase_config phases[] = {
        {"a", 0, 0}, {"b", 0, 0}, {"c", 0, 0}};
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 3;
    cfg.warn_after_ms = CURFEW_NEVER;
    cfg.budget_ms = 800;
    cfg.budget_margin_ms = 300;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.report_path = report;
    cfg.record_path = record;
    cfg.on_event = record_event;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_blocker b[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "%s-stuck", phases[i].name);
        CHECK_EQ(curfew_add_blocker(curfew_phase(cf, phases[i].name), name,
                                    NULL, NULL, &b[i]),
                 0);
    }
    int64_t t0 = wd_mono_ns();
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(curfew_run(cf), 0);
    int64_t took = (wd_mono_ns() - t0) / 1000000;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(curfew_blocker_result(b[i], NULL), CURFEW_RESULT_TIMEOUT);
    pthread_mutex_lock(&g.lock);
    const seen *h;
    CHECK_EQ(count(CURFEW_EV_HANG, &h), 1);
    CHECK_STR(h->barrier, "a");
    if (h->elapsed_ms < 500 - 2 ||
        h->elapsed_ms > 500 + SLACK_MS + WRITE_SLACK_MS ||
        took < h->elapsed_ms || took > h->elapsed_ms + DONE_SLACK_MS)
        th_fail(__FILE__, __LINE__,
                "reported %" PRId64 " ms and done %" PRId64
                " ms after the begin, expected a report at 500-%d and the "
                "end within %d ms of it",
                h->elapsed_ms, took, 500 + SLACK_MS + WRITE_SLACK_MS,
                DONE_SLACK_MS);
    pthread_mutex_unlock(&g.lock);
    curfew__jval *rep = wd_parse_file(report);
    CHECK_STR(wd_jstr(rep, "phase"), "a");
    curfew__json_free(rep);
    curfew__jval *rec = wd_parse_file(record);
    CHECK_EQ(wd_jbool(rec, "clean"), 1);
    const curfew__jval *ph = wd_jget(rec, "phases", CURFEW__J_ARR);
    CHECK_EQ(ph->n, 3);
    for (size_t i = 0; i < 3; i++) {
        const curfew__jval *bl =
            wd_jget(&ph->items[i], "blockers", CURFEW__J_ARR);
        CHECK_EQ(bl->n, 1);
        CHECK_STR(wd_jstr(&bl->items[0], "result"), "timeout");
    }
    curfew__json_free(rec);
    CHECK_EQ(curfew_destroy(cf), 0);
    wd_done(dir);
}
