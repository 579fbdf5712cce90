/* Tests for the libuv adapter: CONTRACT.md S4 (with D1, C6), built against
 * the real libuv. Without libuv at build time each case exits 77 (CTest:
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

#ifdef CURFEW_TEST_UV
#include <curfew/uv.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define UV_RUN(fn) fn()

static struct {
    char order[512]; /* "phase,phase,..." in the order they began */
    int complete;
} E;

static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_PHASE_BEGIN) {
        strncat(E.order, ev->phase, sizeof(E.order) - strlen(E.order) - 2);
        strcat(E.order, ",");
    } else if (ev->type == CURFEW_EV_COMPLETE) {
        E.complete++;
    }
}

/* The program's own handle: a repeating timer closed in stop-accepting. */
static uv_timer_t app_timer;
static int app_ticks;
static curfew_blocker app_blocker;

static void on_app_tick(uv_timer_t *t)
{
    (void)t;
    app_ticks++;
}

static void on_app_closed(uv_handle_t *h)
{
    (void)h;
    curfew_blocker_done(app_blocker);
}

static int close_app(curfew_blocker self, void *arg)
{
    (void)arg;
    app_blocker = self;
    uv_close((uv_handle_t *)&app_timer, on_app_closed);
    return CURFEW_PENDING;
}

/* S4: a real shutdown on a libuv loop: the loop keeps running while the
 * shutdown goes on (its handles are referenced once it began), triggers
 * run on the loop's thread, blockers are finished from other threads, and
 * uv_run() returns when the shutdown is complete and every handle closed,
 * so uv_loop_close() succeeds. */
static void uv_shutdown_threads_body(void)
{
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    curfew_config cfg = {0};
    cfg.on_event = on_event;
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    static ad_jobs jobs;
    ad_jobs_init(&jobs, pthread_self());
    ad_jobs_add(&jobs, curfew_phase(cf, "drain"), "request", 16, 80);
    ad_jobs_add(&jobs, curfew_phase(cf, "persist"), "flush", 8, 40);
    ad_jobs_add(&jobs, curfew_phase(cf, "final"), "service", 4, 20);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "app",
                                close_app, NULL, NULL),
             0);
    CHECK_EQ(uv_timer_init(&loop, &app_timer), 0);
    CHECK_EQ(uv_timer_start(&app_timer, on_app_tick, 5, 5), 0);
    CHECK_EQ(curfew_uv_attach(cf, &loop), 0);

    pthread_t starter = ad_begin_later(cf, 100); /* any thread may begin */
    int64_t t0 = th_now_ms();
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ad_join(starter);
    CHECK(th_now_ms() - t0 >= 100); /* not before the shutdown */

    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(E.complete, 1);
    CHECK_STR(E.order,
              "stop-accepting,drain,children,persist,telemetry,threads,final,");
    CHECK(app_ticks > 0);
    ad_jobs_check(&jobs);
    CHECK_EQ(curfew_uv_detach(cf), 0); /* closed at completion already */
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S4, C6: before the shutdown begins curfew's handles do not keep an idle
 * loop alive, and the loop is not woken. */
static void uv_idle_loop_ends_body(void)
{
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_uv_attach(cf, &loop), 0);
    int64_t t0 = th_now_ms();
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0); /* nothing referenced */
    CHECK(th_now_ms() - t0 < 1000);
    CHECK(curfew_current_phase(cf) == NULL);
    CHECK_EQ(uv_run(&loop, UV_RUN_NOWAIT), 0);
    /* Handles left open: the loop cannot be closed until detach. */
    CHECK_EQ(uv_loop_close(&loop), UV_EBUSY);
    CHECK_EQ(curfew_uv_detach(cf), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0); /* the close callbacks */
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S4: a shutdown begun before the attach (here from a signal handler's
 * path) is driven as soon as the loop runs. */
static void uv_begun_before_attach_body(void)
{
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    static ad_jobs jobs;
    ad_jobs_init(&jobs, pthread_self());
    ad_jobs_add(&jobs, curfew_phase(cf, "drain"), "late", 4, 30);
    CHECK_EQ(curfew_begin_from_signal(cf), 0);
    CHECK_EQ(curfew_uv_attach(cf, &loop), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(curfew_is_complete(cf), 1);
    ad_jobs_check(&jobs);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* S4: errors, and attach again after detach. */
static void uv_errors_body(void)
{
    uv_loop_t loop;
    CHECK_EQ(uv_loop_init(&loop), 0);
    curfew *cf;
    CHECK_EQ(curfew_create(&cf, NULL), 0);
    CHECK_EQ(curfew_uv_attach(NULL, &loop), -EINVAL);
    CHECK_EQ(curfew_uv_attach(cf, NULL), -EINVAL);
    CHECK_EQ(curfew_uv_detach(NULL), -EINVAL);
    CHECK_EQ(curfew_uv_detach(cf), -ENOENT);
    CHECK_EQ(curfew_uv_attach(cf, &loop), 0);
    CHECK_EQ(curfew_uv_attach(cf, &loop), -EALREADY);
    CHECK_EQ(curfew_uv_detach(cf), 0);
    CHECK_EQ(curfew_uv_detach(cf), 0);
    CHECK_EQ(curfew_uv_attach(cf, &loop), 0); /* a fresh pair of handles */
    CHECK_EQ(curfew_begin(cf), 0);
    CHECK_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ(curfew_is_complete(cf), 1);
    CHECK_EQ(curfew_uv_attach(cf, &loop), -ESHUTDOWN);
    CHECK_EQ(uv_loop_close(&loop), 0);
    CHECK_EQ(curfew_destroy(cf), 0);
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    return fd;
}

/* S1, S4: the example echo server answers, and on SIGTERM it drains its
 * connections (each client sees its echo, then EOF) and exits 0 with an
 * empty loop. */
static void uv_example_sigterm_body(void)
{
    ad_child_env();
    int out;
    pid_t pid = ad_spawn(&out, CURFEW_TEST_UV_EXAMPLE, "--port", "0",
                         (const char *)NULL);
    char line[256];
    ad_read_line(out, line, sizeof(line), 20000);
    int port = 0;
    CHECK(sscanf(line, "listening on 127.0.0.1:%d", &port) == 1);
    int a = connect_to(port), b = connect_to(port);
    CHECK(write(a, "hello", 5) == 5);
    char buf[16];
    ssize_t n = 0;
    while (n < 5) {
        ssize_t k = read(a, buf + n, (size_t)(5 - n));
        CHECK(k > 0);
        n += k;
    }
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(kill(pid, SIGTERM) == 0);
    /* Both connections are shut down by the drain phase. */
    CHECK_EQ(read(a, buf, sizeof(buf)), 0);
    CHECK_EQ(read(b, buf, sizeof(buf)), 0);
    close(a);
    close(b);
    char rest[512];
    ad_read_rest(out, rest, sizeof(rest), 20000);
    int st = th_wait_child(pid, 20000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    CHECK(strstr(rest, "served 2 connections, shut down cleanly"));
    close(out);
}

#else
#define UV_RUN(fn) exit(AD_SKIP)
#endif

TEST(uv_shutdown_threads)
{
    UV_RUN(uv_shutdown_threads_body);
}

TEST(uv_idle_loop_ends)
{
    UV_RUN(uv_idle_loop_ends_body);
}

TEST(uv_begun_before_attach)
{
    UV_RUN(uv_begun_before_attach_body);
}

TEST(uv_errors)
{
    UV_RUN(uv_errors_body);
}

TEST(uv_example_sigterm)
{
    UV_RUN(uv_example_sigterm_body);
}
