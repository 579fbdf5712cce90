/* Tests for the GLib adapter: CONTRACT.md S4 (with D1, C6), built against
 * the real GLib. Without GLib at build time each case exits 77 (CTest:
 * skipped).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "ad_util.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef CURFEW_TEST_GLIB
#include <curfew/glib.h>

#define GLIB_RUN(fn) fn()

static struct {
    char order[512];
    GMainLoop *loop;
} G;

static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_PHASE_BEGIN) {
        strncat(G.order, ev->phase, sizeof(G.order) - strlen(G.order) - 2);
        strcat(G.order, ",");
    } else if (ev->type == CURFEW_EV_COMPLETE && G.loop) {
        g_main_loop_quit(G.loop);
    }
}

/* S4: a real shutdown on a GMainContext of its own, iterated by this
 * thread: triggers run here, blockers are finished from other threads,
 * and the source removes itself at the end. */
static void glib_shutdown_threads_body(void)
{
    GMainContext *ctx = g_main_context_new();
    curfew_config cfg = {0};
    cfg.on_event = on_event;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    static ad_jobs jobs;
    ad_jobs_init(&jobs, pthread_self());
    ad_jobs_add(&jobs, curfew_phase(cf, "drain"), "request", 16, 80);
    ad_jobs_add(&jobs, curfew_phase(cf, "persist"), "flush", 8, 40);
    ad_jobs_add(&jobs, curfew_phase(cf, "final"), "service", 4, 20);
    CHECK_EQ(curfew_glib_attach(cf, ctx), 0);

    /* Idle: nothing to dispatch (C6). */
    CHECK(!g_main_context_iteration(ctx, FALSE));

    pthread_t starter = ad_begin_later(cf, 50);
    int64_t end = th_now_ms() + 20000;
    while (!curfew_is_complete(cf)) {
        g_main_context_iteration(ctx, TRUE);
        CHECK(th_now_ms() < end);
    }
    ad_join(starter);
    CHECK_STR(G.order,
              "stop-accepting,drain,children,persist,telemetry,threads,final,");
    ad_jobs_check(&jobs);
    /* The source is gone: an iteration finds nothing to do. */
    CHECK(!g_main_context_iteration(ctx, FALSE));
    CHECK_EQ(curfew_glib_detach(cf), 0);
    g_main_context_unref(ctx);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S4: with a GMainLoop on the default context, quit from on_event at
 * CURFEW_EV_COMPLETE. */
static void glib_main_loop_body(void)
{
    G.loop = g_main_loop_new(NULL, FALSE);
    curfew_config cfg = {0};
    cfg.on_event = on_event;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    static ad_jobs jobs;
    ad_jobs_init(&jobs, pthread_self());
    ad_jobs_add(&jobs, curfew_phase(cf, "drain"), "request", 8, 60);
    CHECK_EQ(curfew_glib_attach(cf, NULL), 0);
    pthread_t starter = ad_begin_later(cf, 50);
    g_main_loop_run(G.loop);
    ad_join(starter);
    CHECK_EQ(curfew_is_complete(cf), 1);
    ad_jobs_check(&jobs);
    CHECK_EQ(curfew_glib_detach(cf), 0);
    g_main_loop_unref(G.loop);
    G.loop = NULL;
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S4: errors, detach and attach again. */
static void glib_errors_body(void)
{
    GMainContext *ctx = g_main_context_new();
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_glib_attach(NULL, ctx), -EINVAL);
    CHECK_EQ(curfew_glib_detach(NULL), -EINVAL);
    CHECK_EQ(curfew_glib_detach(cf), -ENOENT);
    CHECK_EQ(curfew_glib_attach(cf, ctx), 0);
    CHECK_EQ(curfew_glib_attach(cf, ctx), -EALREADY);
    CHECK_EQ(curfew_glib_detach(cf), 0);
    CHECK_EQ(curfew_glib_detach(cf), 0);
    CHECK_EQ(curfew_glib_attach(cf, ctx), 0);
    CHECK_EQ(curfew_begin(cf), 0);
    int64_t end = th_now_ms() + 20000;
    while (!curfew_is_complete(cf)) {
        g_main_context_iteration(ctx, TRUE);
        CHECK(th_now_ms() < end);
    }
    CHECK_EQ(curfew_glib_attach(cf, ctx), -ESHUTDOWN);
    CHECK_EQ(curfew_glib_detach(cf), 0);
    g_main_context_unref(ctx);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S4: curfew_destroy() removes a source the program forgot to detach. */
static void glib_destroy_detaches_body(void)
{
    GMainContext *ctx = g_main_context_new();
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_glib_attach(cf, ctx), 0);
    CHECK(!g_main_context_iteration(ctx, FALSE)); /* prepared, idle */
    CHECK_EQ(curfew_destroy(cf), 0);
    /* A source left behind would now read the freed coordinator in its
     * prepare function (AddressSanitizer's use-after-free). */
    CHECK(!g_main_context_iteration(ctx, FALSE));
    g_main_context_unref(ctx);
}

/* S1, S4: the example ticker accepts jobs until SIGTERM, then finishes
 * every accepted job and exits 0. */
static void glib_example_sigterm_body(void)
{
    ad_child_env();
    int out;
    pid_t pid = ad_spawn(&out, CURFEW_TEST_GLIB_EXAMPLE, (const char *)NULL);
    char line[256];
    ad_read_line(out, line, sizeof(line), 20000);
    CHECK_STR(line, "ready");
    th_sleep_ms(200);
    CHECK(kill(pid, SIGTERM) == 0);
    char rest[512];
    ad_read_rest(out, rest, sizeof(rest), 20000);
    int st = th_wait_child(pid, 20000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    unsigned long acc = 0, done = 0;
    CHECK(sscanf(rest, "accepted %lu, done %lu", &acc, &done) == 2);
    CHECK(acc > 0);
    CHECK_EQ(acc, done);
    close(out);
}

#else
#define GLIB_RUN(fn) exit(AD_SKIP)
#endif

TEST(glib_shutdown_threads)
{
    GLIB_RUN(glib_shutdown_threads_body);
}

TEST(glib_main_loop)
{
    GLIB_RUN(glib_main_loop_body);
}

TEST(glib_errors)
{
    GLIB_RUN(glib_errors_body);
}

TEST(glib_destroy_detaches)
{
    GLIB_RUN(glib_destroy_detaches_body);
}

TEST(glib_example_sigterm)
{
    GLIB_RUN(glib_example_sigterm_body);
}
