/* curfew-bench idle: what a coordinator costs before its shutdown begins
 * (C6): the threads it started and the wake-ups it causes.
 *
 * SPDX-License-Identifier: MIT
 *
 * A coordinator with the default phases and 1 000 blockers (some with a
 * status text, a nested barrier) is watched for --seconds (default 1):
 * threads are the entries of /proc/self/task beyond those before
 * curfew_create; wake-ups are the times curfew_fd() became readable in a
 * poll() held for the whole time, and the writes curfew_stats_get()
 * counts.
 */
#include "bench.h"

#include <curfew.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

static int pending(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_PENDING;
}

int bench_idle(int argc, char **argv)
{
    int64_t secs = bench_opt_int(argc, argv, "--seconds", 1);
    if (secs < 1)
        secs = 1;
    int before = bench_thread_count();
    curfew *cf;
    int e = curfew_create(&cf, NULL);
    if (e)
        bench_die("curfew_create: %s", curfew_strerror(e));
    curfew_barrier *svc;
    e = curfew_barrier_create(cf, "service", NULL, &svc);
    if (!e)
        e = curfew_barrier_wait_in(svc, curfew_phase(cf, "drain"), "service");
    if (e)
        bench_die("barrier: %s", curfew_strerror(e));
    for (int i = 0; i < 1000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "idle %d", i);
        curfew_barrier *b = i % 10 ? curfew_phase(cf, "persist") : svc;
        curfew_blocker h;
        e = curfew_add_blocker(b, name, pending, NULL, &h);
        if (e)
            bench_die("curfew_add_blocker: %s", curfew_strerror(e));
        if (i % 100 == 0)
            curfew_blocker_status(h, "status %d", i);
    }
    int after = bench_thread_count();
    curfew_stats st0, st1;
    curfew_stats_get(cf, &st0);

    int fd_wakeups = 0;
    int64_t t0 = bench_now_ns();
    int64_t end = t0 + secs * 1000000000;
    for (;;) {
        int64_t now = bench_now_ns();
        if (now >= end)
            break;
        int left = (int)((end - now + 999999) / 1000000);
        struct pollfd pfd = {.fd = curfew_fd(cf), .events = POLLIN};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            bench_die("poll: %s", strerror(errno));
        if (r > 0) {
            /* Readable: a wake-up. Dispatch before begin does nothing
             * (D2); wait a little so a level-triggered descriptor that
             * stays readable is not counted a thousand times. */
            fd_wakeups++;
            curfew_dispatch(cf);
            bench_sleep_ms(10);
        }
    }
    int64_t t1 = bench_now_ns();
    curfew_stats_get(cf, &st1);
    int threads_end = bench_thread_count();
    int timeout = curfew_timeout_ms(cf);
    curfew_destroy(cf);

    double s = (double)(t1 - t0) / 1e9;
    uint64_t stat_wakeups = st1.wakeups - st0.wakeups;
    double per_s =
        (double)((uint64_t)fd_wakeups > stat_wakeups ? (uint64_t)fd_wakeups
                                                     : stat_wakeups) /
        s;
    printf("{\"bench\":\"idle\",\"threads_before_begin\":%d,"
           "\"wakeups_per_s_before_begin\":%.2f,\"watched_s\":%.3f,"
           "\"fd_wakeups\":%d,\"stats_wakeups\":%llu,"
           "\"threads_after_watch\":%d,\"curfew_timeout_ms\":%d,"
           "\"process_threads\":%d}\n",
           after - before, per_s, s, fd_wakeups,
           (unsigned long long)stat_wakeups, threads_end - before, timeout,
           threads_end);
    return 0;
}
