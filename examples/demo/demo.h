/* curfew-demo: declarations shared by its files.
 *
 * The demo is a small browser: a parent process (browser.c) and N child
 * processes, its "tabs" (tab.c), shut down the way the browser of curfew's
 * source documents does. main.c reads the options and picks the role;
 * places.c, profile.c hold the parent's services; docs.c reads the JSON
 * documents curfew writes and runs the curfew-report tool; util.c has the
 * small helpers.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_DEMO_H
#define CURFEW_DEMO_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <curfew.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DEMO_MAX_TABS 64
#define DEMO_WORKERS 2 /* worker threads per tab */

/* The exit status when a watchdog fired (ours, or a tab's): EX_SOFTWARE,
 * curfew's default for CURFEW_TIMEOUT_EXIT. */
#define DEMO_EXIT_HANG 70

/* The tabs' own messages on curfew's control channel (P1). Numbers are
 * sent big-endian. */
#define MSG_EVENTS (CURFEW_PROC_MSG_USER + 1)    /* browser -> tab */
#define MSG_TELEMETRY (CURFEW_PROC_MSG_USER + 2) /* tab -> browser */
/* MSG_EVENTS: u32 batch number, u32 events in the batch. The batch number
 * picks the worker (number % DEMO_WORKERS), so the browser knows how many
 * events each worker must count. */
#define EVENTS_LEN 8
/* MSG_TELEMETRY: u32 tab, u32 workers, u64 events the tab could not hand
 * to a worker, then per worker u64 events and u64 batches it counted. */
#define TELEMETRY_LEN (16 + DEMO_WORKERS * 16)

/* The browser's phases, in the browser's order. */
#define PH_QUIT "quit-application"
#define PH_NET_TEARDOWN "profile-change-net-teardown"
#define PH_TEARDOWN "profile-change-teardown"
#define PH_BEFORE_CHANGE "profile-before-change"
#define PH_TELEMETRY "profile-before-change-telemetry"
#define PH_WILL_SHUTDOWN "xpcom-will-shutdown"
#define PH_SHUTDOWN "xpcom-shutdown"
#define PH_THREADS "xpcom-shutdown-threads"

/* A tab's phases: its workers stop and its pages unload, then it sends its
 * telemetry; FinishShutdown goes after the second. */
#define PH_TAB_WILL_SHUTDOWN "content-child-will-shutdown"
#define PH_TAB_SHUTDOWN "content-child-shutdown"

enum demo_hang { HANG_NONE = 0, HANG_CHILD, HANG_WORKER, HANG_IO };

struct demo_options {
    int tabs;
    int64_t run_ms;  /* simulated activity before the shutdown */
    const char *out; /* NULL: a fresh directory under the current one */
    enum demo_hang hang;
    int crash_child;
    int serial;
    int compare;
    /* A tab (internal: the browser starts the tabs with these). */
    int tab;               /* > 0: run as tab number `tab` */
    const char *misbehave; /* "crash", "hang" or "hang-worker" */
    const char *self;      /* this program, to start tabs and runs */
};

int browser_main(const struct demo_options *opt);
int tab_main(const struct demo_options *opt);

/* ---- util.c ------------------------------------------------------------- */

int64_t mono_ms(void);
void sleep_ms(int64_t ms);
uint32_t rng_next(uint32_t *state);

void put_u32(unsigned char *p, uint32_t v);
void put_u64(unsigned char *p, uint64_t v);
uint32_t get_u32(const unsigned char *p);
uint64_t get_u64(const unsigned char *p);

/* Starts a thread with every signal blocked: only the main thread takes
 * SIGINT and SIGTERM. Returns 0 or a positive errno, like pthread_create. */
int start_thread(pthread_t *t, void *(*fn)(void *), void *arg);

/* "dir/name", malloc'd; NULL when out of memory. */
char *path_join(const char *dir, const char *name);
/* mkdir -p. Returns 0 or -errno. */
int make_dirs(const char *path);
/* The whole file, NUL-terminated, malloc'd. Returns 0 or -errno. */
int read_file(const char *path, char **data, size_t *len);

/* A growing text buffer, always NUL-terminated once it holds anything; a
 * failed allocation sets failed and keeps the text as it was. */
struct buf {
    char *p;
    size_t len, cap;
    int failed;
};
void buf_append(struct buf *b, const void *data, size_t len);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string, quotes included. */
void buf_json_str(struct buf *b, const char *s);
void buf_free(struct buf *b);

/* "killed by signal 6 (SIGABRT)", "exited with status 3", into out. */
void describe_status(int status, char *out, size_t size);

/* A single timer thread for simulated work: fn(arg) runs on it after
 * delay_ms. later() returns 0, -ENOSPC (too many pending) or -ESHUTDOWN
 * (stopped). later_stop() joins the thread; what has not run is dropped. */
int later_start(void);
int later(int64_t delay_ms, void (*fn)(void *arg), void *arg);
void later_stop(void);

/* ---- docs.c: the JSON documents and the curfew-report tool -------------- */

/* Runs sql with ?1 bound to the JSON text json and calls row() for each
 * result row (SQLite's JSON functions are the parser). row returns 0 to go
 * on. Returns 0, or -1 with a message in err. */
struct sqlite3_stmt;
typedef int (*json_row_fn)(struct sqlite3_stmt *st, void *arg);
int json_query(const char *json, const char *sql, json_row_fn row, void *arg,
               char *err, size_t errsize);

/* The curfew-report tool next to this program or in PATH, or NULL. */
const char *report_tool(const char *self);
/* Runs `tool cmd file`, its output to out_path (NULL: our standard
 * output). Returns its exit status, or -1 if it could not run. */
int run_report_tool(const char *tool, const char *cmd, const char *file,
                    const char *out_path);
/* Prints what a hang report (R1) says: what hung, where it was registered,
 * its last status. who names the process ("browser", "tab-2"). */
void print_hang_report(const char *json, const char *who);
/* A short timeline of a shutdown record (R2), for when the tool is
 * missing. Returns 0 or -1. */
int print_short_timeline(const char *record_path);
/* Phase durations of a record, for --compare: names and ms, in order.
 * Returns the number of phases (at most max), or -1. */
int record_phases(const char *record_path, char names[][64], int64_t *ms,
                  int max, int64_t *total_ms);

#endif /* CURFEW_DEMO_H */
