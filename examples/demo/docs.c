/* curfew-demo: reading the JSON documents curfew writes, and running the
 * curfew-report tool.
 *
 * The demo reads hang reports (R1), records (R2) and its own telemetry.json
 * back from disk to show and check them. SQLite, which the demo links for
 * the history anyway, brings a real JSON parser: json_extract() and
 * json_each() over the document bound as a parameter.
 *
 * SPDX-License-Identifier: MIT
 */
#include "demo.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int json_query(const char *json, const char *sql, json_row_fn row, void *arg,
               char *err, size_t errsize)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open(":memory:", &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && row && row(st, arg) != 0)
            rc = SQLITE_DONE;
    }
    if (rc != SQLITE_DONE)
        snprintf(err, errsize, "%s", db ? sqlite3_errmsg(db) : "no memory");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- the curfew-report tool --------------------------------------------- */

const char *report_tool(const char *self)
{
    static char path[4096];
    /* Installed or built, it sits next to curfew-demo. */
    const char *slash = strrchr(self, '/');
    if (slash) {
        snprintf(path, sizeof(path), "%.*s/curfew-report", (int)(slash - self),
                 self);
        if (access(path, X_OK) == 0)
            return path;
    }
    const char *dirs = getenv("PATH");
    while (dirs && *dirs) {
        size_t n = strcspn(dirs, ":");
        snprintf(path, sizeof(path), "%.*s/curfew-report", (int)n, dirs);
        if (n && access(path, X_OK) == 0)
            return path;
        dirs += n + (dirs[n] == ':');
    }
    return NULL;
}

int run_report_tool(const char *tool, const char *cmd, const char *file,
                    const char *out_path)
{
    char *argv[] = {(char *)tool, (char *)cmd, (char *)file, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int st;
    fflush(stdout); /* its output goes after ours */
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    if (out_path)
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out_path,
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int r = posix_spawn(&pid, tool, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (r != 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- showing a hang report ---------------------------------------------- */

/* Names and statuses are user data (R4): control characters could move
 * the cursor; they are shown as '?'. */
static void print_clean(const char *s)
{
    for (; s && *s; s++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
}

static const char *text(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? s : "";
}

static int hang_head(sqlite3_stmt *st, void *arg)
{
    const char *who = arg;
    const char *process = text(st, 0);
    print_clean(*process ? process : who);
    printf(" (pid %lld) hung in phase ", sqlite3_column_int64(st, 1));
    print_clean(text(st, 2));
    printf(":\n  barrier ");
    print_clean(text(st, 3));
    printf(" waited %lld ms (limit %lld ms) for\n", sqlite3_column_int64(st, 4),
           sqlite3_column_int64(st, 5));
    return 0;
}

static int hang_condition(sqlite3_stmt *st, void *arg)
{
    (void)arg;
    printf("    \"");
    print_clean(text(st, 0));
    printf("\", pending for %lld ms\n        registered at ",
           sqlite3_column_int64(st, 5));
    print_clean(*text(st, 2) ? text(st, 2) : "(unknown)");
    printf(":%lld in ", sqlite3_column_int64(st, 3));
    print_clean(text(st, 4));
    printf("()\n        last status: ");
    print_clean(*text(st, 1) ? text(st, 1) : "(none)");
    printf("\n");
    return 0;
}

void print_hang_report(const char *json, const char *who)
{
    char err[160];
    printf("  ");
    if (json_query(json,
                   "SELECT json_extract(?1, '$.process'),"
                   " json_extract(?1, '$.pid'), json_extract(?1, '$.phase'),"
                   " (SELECT group_concat(value, ' > ')"
                   "  FROM json_each(?1, '$.barrier_path')),"
                   " json_extract(?1, '$.elapsed_ms'),"
                   " json_extract(?1, '$.timeout_ms')",
                   hang_head, (void *)who, err, sizeof(err)) != 0 ||
        json_query(json,
                   "SELECT json_extract(value, '$.name'),"
                   " json_extract(value, '$.status'),"
                   " json_extract(value, '$.file'),"
                   " json_extract(value, '$.line'),"
                   " json_extract(value, '$.function'),"
                   " json_extract(value, '$.age_ms')"
                   " FROM json_each(?1, '$.conditions')",
                   hang_condition, NULL, err, sizeof(err)) != 0)
        printf("(the hang report of %s cannot be read: %s)\n", who, err);
}

/* ---- a short timeline, without the tool --------------------------------- */

static void ms_or_dash(sqlite3_stmt *st, int col, char *out, size_t size)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        snprintf(out, size, "-");
    else
        snprintf(out, size, "%lld", sqlite3_column_int64(st, col));
}

static int blocker_row(sqlite3_stmt *st, void *arg)
{
    (void)arg;
    char from[24], to[24];
    ms_or_dash(st, 1, from, sizeof(from));
    ms_or_dash(st, 2, to, sizeof(to));
    printf("    %6s .. %6s ms  %-8s ", from, to, text(st, 3));
    print_clean(text(st, 0));
    if (*text(st, 4)) {
        printf(": ");
        print_clean(text(st, 4));
    }
    printf("\n");
    return 0;
}

static int phase_row(sqlite3_stmt *st, void *arg)
{
    char from[24], to[24], err[160];
    (void)arg;
    ms_or_dash(st, 1, from, sizeof(from));
    ms_or_dash(st, 2, to, sizeof(to));
    printf("  %6s .. %6s ms  ", from, to);
    print_clean(text(st, 0));
    printf("\n");
    json_query(text(st, 3),
               "SELECT json_extract(value, '$.name'),"
               " json_extract(value, '$.start_ms'),"
               " json_extract(value, '$.end_ms'),"
               " json_extract(value, '$.result'),"
               " coalesce(json_extract(value, '$.error'),"
               "          json_extract(value, '$.status'))"
               " FROM json_each(?1, '$.blockers')",
               blocker_row, NULL, err, sizeof(err));
    return 0;
}

int print_short_timeline(const char *record_path)
{
    char *json, err[160];
    size_t len;
    if (read_file(record_path, &json, &len) != 0) {
        printf("  (no record at %s)\n", record_path);
        return -1;
    }
    int r = json_query(json,
                       "SELECT json_extract(value, '$.name'),"
                       " json_extract(value, '$.start_ms'),"
                       " json_extract(value, '$.end_ms'), value"
                       " FROM json_each(?1, '$.phases')",
                       phase_row, NULL, err, sizeof(err));
    if (r)
        printf("  (the record cannot be read: %s)\n", err);
    free(json);
    return r;
}

/* ---- phase durations, for --compare ------------------------------------- */

struct phases_acc {
    char (*names)[64];
    int64_t *ms;
    int max, n;
    int64_t end;
};

static int duration_row(sqlite3_stmt *st, void *arg)
{
    struct phases_acc *a = arg;
    if (a->n == a->max)
        return 1;
    int64_t start = sqlite3_column_int64(st, 1),
            end = sqlite3_column_int64(st, 2);
    int done = sqlite3_column_type(st, 2) != SQLITE_NULL;
    snprintf(a->names[a->n], 64, "%s", text(st, 0));
    a->ms[a->n++] = done ? end - start : -1;
    if (done && end > a->end)
        a->end = end;
    return 0;
}

int record_phases(const char *record_path, char names[][64], int64_t *ms,
                  int max, int64_t *total_ms)
{
    char *json, err[160];
    size_t len;
    struct phases_acc a = {names, ms, max, 0, 0};
    if (read_file(record_path, &json, &len) != 0)
        return -1;
    int r = json_query(json,
                       "SELECT json_extract(value, '$.name'),"
                       " json_extract(value, '$.start_ms'),"
                       " json_extract(value, '$.end_ms')"
                       " FROM json_each(?1, '$.phases')",
                       duration_row, &a, err, sizeof(err));
    free(json);
    *total_ms = a.end;
    return r ? -1 : a.n;
}
