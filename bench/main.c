/* curfew-bench: the benchmarks of docs/BENCHMARKS.md. Each subcommand
 * prints one JSON object on one line; ./dev bench runs them all.
 *
 * SPDX-License-Identifier: MIT
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: curfew-bench phase --blockers N --threads T --max-delay-ms D\n"
    "                          [--seed S] [--seq-blockers S]\n"
    "       curfew-bench procs --children C --child-ms M\n"
    "       curfew-bench io --files F --bytes B [--dir DIR]\n"
    "       curfew-bench watchdog --timeout-ms T [--dir DIR]\n"
    "       curfew-bench idle [--seconds S]\n";

int main(int argc, char **argv)
{
    static char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        bench_self = self;
    } else if (argc > 0) {
        bench_self = argv[0];
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    argc -= 1;
    argv += 1;
    if (strcmp(cmd, "phase") == 0)
        return bench_phase(argc, argv);
    if (strcmp(cmd, "procs") == 0)
        return bench_procs(argc, argv);
    if (strcmp(cmd, "io") == 0)
        return bench_io(argc, argv);
    if (strcmp(cmd, "watchdog") == 0)
        return bench_watchdog(argc, argv);
    if (strcmp(cmd, "idle") == 0)
        return bench_idle(argc, argv);
    /* The child modes: curfew-bench re-executed by procs and watchdog. */
    if (strcmp(cmd, "procs-child") == 0)
        return bench_procs_child(argc, argv);
    if (strcmp(cmd, "watchdog-child") == 0)
        return bench_watchdog_child(argc, argv);
    fputs(usage, stderr);
    return 2;
}
