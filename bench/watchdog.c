/* curfew-bench watchdog: a child process hangs in a phase whose
 * crash_after_ms is T, with on_timeout EXIT and a report_path (W3). The
 * parent measures when the report appears and when the child exits,
 * against the moment the child began its shutdown.
 *
 * SPDX-License-Identifier: MIT
 *
 * The child prints the CLOCK_MONOTONIC time it took just before
 * curfew_begin; that clock is the same in every process. The parent
 * looks for the report (written atomically, so it appears whole) every
 * 0.2 ms, which bounds the error of the measurement.
 */
#include "bench.h"

#include <curfew.h>

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int bench_watchdog(int argc, char **argv)
{
    int64_t t = bench_opt_int(argc, argv, "--timeout-ms", 1000);
    const char *base = bench_opt_str(argc, argv, "--dir", ".");
    if (t < 1 || t > 600000)
        bench_die("--timeout-ms must be 1..600000");
    char dir[4096], report[4200], tbuf[32];
    bench_fmt(dir, sizeof(dir), "%s/curfew-bench-hang.XXXXXX", base);
    if (!mkdtemp(dir))
        bench_die("mkdtemp %s: %s", dir, strerror(errno));
    bench_fmt(report, sizeof(report), "%s/hang.json", dir);
    bench_fmt(tbuf, sizeof(tbuf), "%lld", (long long)t);

    int fds[2];
    if (pipe(fds))
        bench_die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *cargv[] = {(char *)bench_self,
                     "watchdog-child",
                     "--timeout-ms",
                     tbuf,
                     "--report",
                     report,
                     NULL};
    pid_t pid;
    int e = posix_spawn(&pid, bench_self, &fa, NULL, cargv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e)
        bench_die("posix_spawn %s: %s", bench_self, strerror(e));
    close(fds[1]);

    char line[64];
    size_t got = 0;
    while (got < sizeof(line) - 1) {
        ssize_t r = read(fds[0], line + got, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || line[got] == '\n')
            break;
        got++;
    }
    line[got] = '\0';
    close(fds[0]);
    int64_t began = strtoll(line, NULL, 10);
    if (began <= 0)
        bench_die("the child did not say when it began");

    int64_t reported = -1, exited = -1;
    int status = 0;
    int64_t give_up = began + (t + 30000) * 1000000;
    while (reported < 0 || exited < 0) {
        int64_t now = bench_now_ns();
        struct stat sb;
        if (reported < 0 && stat(report, &sb) == 0)
            reported = now;
        if (exited < 0 && waitpid(pid, &status, WNOHANG) == pid)
            exited = now;
        if (now > give_up)
            break;
        bench_sleep_until_ns(now + 200000);
    }
    if (exited < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    unlink(report);
    rmdir(dir);

    double rep = reported < 0 ? -1 : (double)(reported - began) / 1e6;
    double ex = exited < 0 ? -1 : (double)(exited - began) / 1e6;
    int code = exited >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    printf("{\"bench\":\"watchdog\",\"timeout_ms\":%lld,"
           "\"reported_after_ms\":%.3f,\"late_ms\":%.3f,"
           "\"exited_after_ms\":%.3f,\"exit_late_ms\":%.3f,"
           "\"exit_status\":%d,\"report_written\":%s}\n",
           (long long)t, rep, reported < 0 ? -1 : rep - (double)t, ex,
           exited < 0 ? -1 : ex - (double)t, code,
           reported < 0 ? "false" : "true");
    return reported < 0 || exited < 0 ? 1 : 0;
}

static int hang_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    curfew_blocker_status(self, "never finishes (curfew-bench watchdog)");
    return CURFEW_PENDING;
}

int bench_watchdog_child(int argc, char **argv)
{
    int64_t t = bench_opt_int(argc, argv, "--timeout-ms", 1000);
    const char *report = bench_opt_str(argc, argv, "--report", NULL);
    if (!report)
        bench_die("watchdog-child: --report is needed");
    static const curfew_phase_config phases[] = {{"hang", 0, 0}};
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = phases;
    cfg.phase_count = 1;
    cfg.warn_after_ms = CURFEW_NEVER;
    cfg.crash_after_ms = (int32_t)t;
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.report_path = report;
    cfg.process_name = "curfew-bench watchdog-child";
    curfew *cf;
    int e = curfew_create(&cf, &cfg);
    if (e)
        bench_die("watchdog-child: curfew_create: %s", curfew_strerror(e));
    e = curfew_add_blocker(curfew_phase(cf, "hang"), "stuck", hang_trigger,
                           NULL, NULL);
    if (e)
        bench_die("watchdog-child: curfew_add_blocker: %s", curfew_strerror(e));
    int64_t t0 = bench_now_ns();
    curfew_begin(cf);
    printf("%lld\n", (long long)t0);
    fflush(stdout);
    curfew_run(cf); /* the watchdog exits the process */
    return 3;
}
