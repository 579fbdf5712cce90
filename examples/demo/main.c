/* curfew-demo: a multi-process program that shuts down like the browser of
 * curfew's source documents, and proves that nothing was lost.
 *
 *   curfew-demo [--tabs N] [--seconds S] [--out DIR] [--serial]
 *               [--crash-child | --hang=child|worker|io]
 *   curfew-demo --compare [--tabs N] [--seconds S] [--out DIR]
 *
 * A browser process starts N tab processes, browses for S seconds and
 * quits (SIGINT or SIGTERM quit earlier). The shutdown runs the browser's
 * phases; afterwards the demo prints the timeline, where the record, the
 * Chrome trace and the SVG picture were written, and a verification table
 * that compares what the browser did with what is on disk. It exits 0
 * only when nothing was lost.
 *
 * Only curfew's public API is used (#include <curfew.h>), and SQLite for
 * the history and for reading JSON back.
 *
 * SPDX-License-Identifier: MIT
 */
#include "demo.h"

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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: curfew-demo [--tabs N] [--seconds S] [--out DIR] "
            "[--serial]\n"
            "                   [--crash-child | --hang=child|worker|io]\n"
            "       curfew-demo --compare [--tabs N] [--seconds S] "
            "[--out DIR]\n"
            "\n"
            "  --tabs N         tab processes, 1 to %d (4)\n"
            "  --seconds S      browse for S seconds before quitting (3)\n"
            "  --out DIR        where the files go (a fresh "
            "./curfew-demo-XXXXXX)\n"
            "  --serial         the old way: profile-before-change waits for "
            "each tab\n"
            "                   and each service one after another\n"
            "  --crash-child    a tab crashes in the middle of its shutdown\n"
            "  --hang=child     a tab's page never finishes unloading\n"
            "  --hang=worker    a tab's worker thread never stops\n"
            "  --hang=io        the history database never gets to close\n"
            "  --compare        run the default and the --serial shutdown "
            "and compare\n"
            "\n"
            "Exit status: 0 nothing lost, 1 something lost, 2 usage, %d a "
            "watchdog fired.\n",
            DEMO_MAX_TABS, DEMO_EXIT_HANG);
}

static void bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "curfew-demo: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    exit(2);
}

/* "--name VALUE" or "--name=VALUE": the value, or NULL if argv[*i] is not
 * that option. */
static const char *option(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc)
        bad_usage("%s needs a value", name);
    return argv[++*i];
}

static long whole_number(const char *s, long min, long max, const char *name)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        bad_usage("bad value for %s", name);
    return v;
}

/* This program's own path, to start tabs (and runs, for --compare). */
static const char *self_path(const char *argv0)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n > 0) {
        path[n] = '\0';
        return path;
    }
    return argv0;
}

/* ---- --compare ---------------------------------------------------------- */

#define CMP_MAX_PHASES (8 + DEMO_MAX_TABS + 3)

/* Runs this program with args, its output into log. Returns its exit
 * status, or -1. */
static int run_self(const struct demo_options *opt, const char *dir, int serial,
                    const char *log)
{
    char tabs[16], secs[32];
    snprintf(tabs, sizeof(tabs), "%d", opt->tabs);
    snprintf(secs, sizeof(secs), "%.3f", (double)opt->run_ms / 1000.0);
    char *argv[] = {(char *)opt->self,
                    "--tabs",
                    tabs,
                    "--seconds",
                    secs,
                    "--out",
                    (char *)dir,
                    serial ? "--serial" : NULL,
                    NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid;
    int st, r = posix_spawn(&pid, opt->self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r)
        return -1;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The serial run cuts profile-before-change in parts named
 * "profile-before-change/..."; they add up to its one phase. */
static int64_t phase_ms(char names[][64], const int64_t *ms, int n,
                        const char *phase)
{
    int64_t sum = -1;
    size_t len = strlen(phase);
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], phase) == 0 ||
            (strncmp(names[i], phase, len) == 0 && names[i][len] == '/')) {
            if (ms[i] >= 0)
                sum = (sum < 0 ? 0 : sum) + ms[i];
        }
    }
    return sum;
}

static int compare_main(const struct demo_options *opt)
{
    char tmpl[] = "curfew-demo-XXXXXX";
    const char *dir = opt->out;
    if (dir) {
        if (make_dirs(dir) != 0)
            bad_usage("cannot make %s", dir);
    } else if ((dir = mkdtemp(tmpl)) == NULL) {
        perror("curfew-demo: mkdtemp");
        return 1;
    }
    printf("curfew-demo --compare: the same browser (%d tabs, %.1f s of "
           "browsing) shut down twice\n",
           opt->tabs, (double)opt->run_ms / 1000.0);

    static const char *const modes[2] = {"default", "serial"};
    static char names[2][CMP_MAX_PHASES][64];
    static int64_t ms[2][CMP_MAX_PHASES];
    int n[2], status[2];
    int64_t total[2];
    for (int m = 0; m < 2; m++) {
        char *sub = path_join(dir, modes[m]);
        char *log = sub ? path_join(sub, "output.txt") : NULL;
        char *record = sub ? path_join(sub, "shutdown-record.json") : NULL;
        if (!record || make_dirs(sub) != 0) {
            fprintf(stderr, "curfew-demo: cannot make %s\n", sub ? sub : dir);
            return 1;
        }
        printf("  %-7s run: ", modes[m]);
        fflush(stdout);
        status[m] = run_self(opt, sub, m == 1, log);
        n[m] =
            record_phases(record, names[m], ms[m], CMP_MAX_PHASES, &total[m]);
        printf("exit status %d (%s); its output is in %s\n", status[m],
               status[m] == 0 ? "nothing lost" : "see there", log);
        free(sub);
        free(log);
        free(record);
    }
    if (n[0] < 0 || n[1] < 0) {
        printf("a run left no readable record\n");
        return 1;
    }

    printf("\n  %-34s %10s %10s\n", "phase", "default", "serial");
    for (int i = 0; i < n[0]; i++) {
        int64_t a = phase_ms(names[0], ms[0], n[0], names[0][i]);
        int64_t b = phase_ms(names[1], ms[1], n[1], names[0][i]);
        printf("  %-34s %7lld ms %7lld ms%s\n", names[0][i], (long long)a,
               (long long)b,
               strcmp(names[0][i], PH_BEFORE_CHANGE) == 0
                   ? "   <- tabs and services: at once vs one by one"
                   : "");
    }
    printf("  %-34s %7lld ms %7lld ms   (%.1fx)\n", "whole shutdown",
           (long long)total[0], (long long)total[1],
           total[0] > 0 ? (double)total[1] / (double)total[0] : 0.0);
    return status[0] == 0 && status[1] == 0 ? 0 : 1;
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct demo_options opt = {.tabs = 4, .run_ms = 3000};
    opt.self = self_path(argv[0]);
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((v = option(argc, argv, &i, "--tabs")) != NULL) {
            opt.tabs = (int)whole_number(v, 1, DEMO_MAX_TABS, "--tabs");
        } else if ((v = option(argc, argv, &i, "--seconds")) != NULL) {
            char *end;
            double s = strtod(v, &end);
            if (end == v || *end || !(s >= 0 && s <= 3600))
                bad_usage("bad value for %s", "--seconds");
            opt.run_ms = (int64_t)(s * 1000.0);
        } else if ((v = option(argc, argv, &i, "--out")) != NULL) {
            if (!*v)
                bad_usage("%s needs a directory", "--out");
            opt.out = v;
        } else if ((v = option(argc, argv, &i, "--hang")) != NULL) {
            opt.hang = strcmp(v, "child") == 0    ? HANG_CHILD
                       : strcmp(v, "worker") == 0 ? HANG_WORKER
                       : strcmp(v, "io") == 0     ? HANG_IO
                                                  : HANG_NONE;
            if (opt.hang == HANG_NONE)
                bad_usage("--hang takes child, worker or io, not %s", v);
        } else if (strcmp(argv[i], "--crash-child") == 0) {
            opt.crash_child = 1;
        } else if (strcmp(argv[i], "--serial") == 0) {
            opt.serial = 1;
        } else if (strcmp(argv[i], "--compare") == 0) {
            opt.compare = 1;
        } else if ((v = option(argc, argv, &i, "--tab")) != NULL) {
            /* Internal: the browser starts its tabs this way. */
            opt.tab = (int)whole_number(v, 1, DEMO_MAX_TABS, "--tab");
        } else if ((v = option(argc, argv, &i, "--misbehave")) != NULL) {
            opt.misbehave = v;
        } else {
            bad_usage("unknown option %s", argv[i]);
        }
    }
    if (opt.tab) {
        if (!opt.out)
            bad_usage("%s needs --out", "--tab");
        return tab_main(&opt);
    }
    if (opt.hang && opt.crash_child)
        bad_usage("%s: one misbehaviour at a time", "--crash-child");
    if (opt.compare && (opt.hang || opt.crash_child || opt.serial))
        bad_usage("%s runs the default and the serial shutdown by itself",
                  "--compare");
    return opt.compare ? compare_main(&opt) : browser_main(&opt);
}
