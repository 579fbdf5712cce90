/* curfew-tool-gen: produces real documents for the curfew-report tests
 * (R3) with the library itself, so the fixtures follow the format as it
 * evolves.
 *
 *   curfew-tool-gen DIR
 *
 * writes, in DIR:
 *   record.json       the shutdown record (R2) of a finished shutdown
 *   record-hung.json  the record as rewritten at the hang: a running phase
 *                     with pending blockers
 *   hang.json         the hang report (R1) of a nested barrier
 *   state.json        a state report ("curfew-state") taken mid-shutdown
 *
 * The shutdown has ok, failed, removed and timed-out blockers, a nested
 * barrier, broken registrations (B5) and names and status texts holding
 * quotes, newlines, control characters, invalid UTF-8 and "<svg>&" (R4).
 * Only the public API is used; one thread dispatches and finishes the
 * blockers from its own timer list.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <curfew.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WEIRD_PHASE "tele\"metry\" <svg>&"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum action { FINISH, FAIL, NEVER };

struct job {
    const char *barrier;
    const char *name;
    int64_t delay_ms;
    enum action action;
    const char *status; /* set when triggered, may be NULL */
    /* filled while running */
    curfew_blocker handle;
    int64_t due; /* -1: not armed */
};

static struct job jobs[] = {
    {"stop-accepting", "http listener", 30, FINISH, "closing 3 sockets"},
    {"stop-accepting", "admin socket", 10, FINISH, NULL},
    {"drain", "request pool", 60, FINISH, "17 requests in flight"},
    {"drain", "websocket sessions", 40, FINISH, NULL},
    {"persist", "settings.json", 20, FINISH, "atomic write of 4 KiB"},
    {"persist", "history db", 30, FAIL, "checkpointing the WAL"},
    {"cache", "cache writer", 40, FINISH, "writing 128 dirty pages"},
    {"cache", "stuck \"db\" <svg>&\nline2", 0, NEVER,
     "waiting for lock \"L\" <&> \\ \t"},
    {"cache", "cache index", 0, NEVER, "compacting the index"},
    {WEIRD_PHASE, "bad\xff\xfeutf8 \xc3\xa9 \xf0\x9f\x9a\x80", 5, FINISH,
     "ctl \x01\x1b[31m red"},
    {"final", "log file", 15, FINISH, NULL},
};
#define NJOBS (sizeof jobs / sizeof jobs[0])

static curfew *cf;
static curfew_barrier *cache;
static char dir[PATH_MAX - 64];
static curfew_blocker exporter; /* removed while drain waits (B6) */
static int64_t drain_started = -1;
static int state_written;

static void die(const char *what, int rc)
{
    fprintf(stderr, "curfew-tool-gen: %s: %s\n", what, curfew_strerror(rc));
    exit(1);
}

static void path_of(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static int copy_file(const char *from, const char *to)
{
    char buf[4096];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        int e = -errno;
        close(in);
        return e;
    }
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            rc = -EIO;
            break;
        }
    }
    if (n < 0)
        rc = -errno;
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int trigger(curfew_blocker self, void *arg)
{
    struct job *j = arg;
    j->handle = self;
    if (j->status)
        curfew_blocker_status(self, "%s", j->status);
    if (j->action != NEVER)
        j->due = now_ms() + j->delay_ms;
    if (strcmp(j->barrier, "drain") == 0 && drain_started < 0)
        drain_started = now_ms();
    if (strcmp(j->name, "http listener") == 0) {
        /* A registration with a NULL name is refused and remembered as
         * "(null)" (B5). */
        curfew_add_blocker(curfew_phase(cf, "drain"), NULL, NULL, NULL, NULL);
    }
    if (strcmp(j->name, "request pool") == 0) {
        /* Too late: stop-accepting has completed (-ESHUTDOWN, B5). */
        curfew_add_blocker(curfew_phase(cf, "stop-accepting"),
                           "late \"listener\" <a&b>", NULL, NULL, NULL);
    }
    return CURFEW_PENDING;
}

/* The hang event runs on the watchdog thread right after the record was
 * rewritten: keep that version, with its running phase. */
static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type != CURFEW_EV_HANG)
        return;
    char from[PATH_MAX], to[PATH_MAX];
    path_of(from, sizeof from, "record.json");
    path_of(to, sizeof to, "record-hung.json");
    int rc = copy_file(from, to);
    if (rc != 0)
        die("copying the record at the hang", rc);
}

static void write_state(void)
{
    char p[PATH_MAX];
    path_of(p, sizeof p, "state.json");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die("state.json", -errno);
    int rc = curfew_report_write_state(cf, fd);
    if (rc != 0)
        die("curfew_report_write_state", rc);
    close(fd);
}

static void run_timers(void)
{
    int64_t now = now_ms();
    for (size_t i = 0; i < NJOBS; i++) {
        struct job *j = &jobs[i];
        if (j->due < 0 || j->due > now)
            continue;
        j->due = -1;
        int rc;
        if (j->action == FAIL)
            rc = curfew_blocker_fail(j->handle, -EIO,
                                     "fsync(history.db) failed");
        else
            rc = curfew_blocker_done(j->handle);
        if (rc != 0)
            die(j->name, rc);
    }
    if (drain_started >= 0 && now - drain_started >= 5 && exporter.cf) {
        int rc = curfew_remove_blocker(exporter);
        if (rc != 0)
            die("removing the exporter", rc);
        exporter.cf = NULL;
    }
    if (drain_started >= 0 && now - drain_started >= 20 && !state_written) {
        state_written = 1;
        write_state();
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || strlen(argv[1]) >= sizeof dir) {
        fprintf(stderr, "usage: curfew-tool-gen DIR\n");
        return 1;
    }
    strcpy(dir, argv[1]);
    char report[PATH_MAX], record[PATH_MAX];
    path_of(report, sizeof report, "hang.json");
    path_of(record, sizeof record, "record.json");

    static const curfew_phase_config phases[] = {
        {"stop-accepting", 0, 0}, {"drain", 0, 0}, {"persist", 0, 0},
        {WEIRD_PHASE, 0, 0},      {"final", 0, 0},
    };
    curfew_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.phases = phases;
    cfg.phase_count = sizeof phases / sizeof phases[0];
    cfg.warn_after_ms = CURFEW_NEVER;
    cfg.crash_after_ms = 30000;
    cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    cfg.report_path = report;
    cfg.record_path = record;
    cfg.process_name = "gen \"demo\" <&>";
    cfg.on_event = on_event;

    int rc = curfew_create(&cf, &cfg);
    if (rc != 0)
        die("curfew_create", rc);
    /* The nested barrier hangs: the watchdog reports it (R1) and marks
     * its pending blockers timeout (W3, CURFEW_TIMEOUT_CONTINUE). Long
     * enough after the cache writer's 40 ms that a loaded machine still
     * finishes the writer first (it must end "ok", not "timeout"). */
    curfew_barrier_config bcfg = {CURFEW_NEVER, 1000};
    rc = curfew_barrier_create(cf, "cache", &bcfg, &cache);
    if (rc != 0)
        die("curfew_barrier_create", rc);
    rc = curfew_barrier_wait_in(cache, curfew_phase(cf, "persist"), "cache");
    if (rc != 0)
        die("curfew_barrier_wait_in", rc);

    for (size_t i = 0; i < NJOBS; i++) {
        struct job *j = &jobs[i];
        curfew_barrier *b = strcmp(j->barrier, "cache") == 0
                                ? cache
                                : curfew_phase(cf, j->barrier);
        j->due = -1;
        rc = curfew_add_blocker(b, j->name, trigger, j, NULL);
        if (rc != 0)
            die(j->name, rc);
    }
    rc = curfew_add_blocker(curfew_phase(cf, "drain"), "metrics exporter", NULL,
                            NULL, &exporter);
    if (rc != 0)
        die("metrics exporter", rc);

    rc = curfew_begin(cf);
    if (rc != 0)
        die("curfew_begin", rc);
    int64_t limit = now_ms() + 20000;
    for (;;) {
        rc = curfew_dispatch(cf);
        if (rc < 0)
            die("curfew_dispatch", rc);
        if (rc == 1)
            break;
        if (now_ms() > limit) {
            fprintf(stderr, "curfew-tool-gen: shutdown did not complete\n");
            return 1;
        }
        struct pollfd pfd = {curfew_fd(cf), POLLIN, 0};
        poll(&pfd, 1, 2);
        run_timers();
    }
    if (!state_written) {
        fprintf(stderr, "curfew-tool-gen: no state report written\n");
        return 1;
    }
    rc = curfew_destroy(cf);
    if (rc != 0)
        die("curfew_destroy", rc);
    return 0;
}
