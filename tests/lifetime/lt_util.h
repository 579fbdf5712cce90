/* Helpers shared by the lifetime tests (tests/lifetime/test_*.c): a
 * coordinator configured for tests (record file, short timeouts, an event
 * log), modules whose shutdown is logged in order and may finish later
 * from a thread, and look-ups in the parsed shutdown record.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_LT_UTIL_H
#define CURFEW_TEST_LT_UTIL_H

#include "harness.h"
#include "report/jsonr.h"

#include <curfew/core.h>
#include <curfew/lifetime.h>
#include <curfew/report.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define LT_PATH 512
#define LT_MAX_EVENTS 256

/* 1 in a ThreadSanitizer build, 1 in an AddressSanitizer build. */
int lt_tsan(void);
int lt_asan(void);

/* ---- events ------------------------------------------------------------- */

typedef struct lt_event {
    curfew_event_type type;
    char blocker[128];
    char phase[64];
    int error;
    char text[1024];
} lt_event;

/* Every event of one coordinator, in order (on_event may run on the
 * watchdog's thread: the log has its own lock). */
typedef struct lt_events {
    pthread_mutex_t mu;
    unsigned n;
    lt_event ev[LT_MAX_EVENTS];
} lt_events;

void lt_on_event(const curfew_event *ev, void *arg);
/* Number of events of type (and, if blocker is not NULL, of that blocker);
 * *first (may be NULL) gets a copy of the first one. */
unsigned lt_events_count(lt_events *log, curfew_event_type type,
                         const char *blocker, lt_event *first);

/* ---- a coordinator for tests -------------------------------------------- */

typedef struct lt_env {
    char dir[LT_PATH];
    char record[LT_PATH + 32];
    curfew_config cfg;
    lt_events events;
    curfew *cf;
} lt_env;

/* A fresh directory and a configuration: the default phases, the record in
 * dir/record.json, the event log, a watchdog that lets a stuck phase go on
 * after 10 s (CURFEW_TIMEOUT_CONTINUE) so a bug fails a check instead of
 * aborting. Change env->cfg, then call lt_env_create(). */
void lt_env_init(lt_env *env);
void lt_env_create(lt_env *env);
/* curfew_begin() + curfew_run() on this thread; returns the milliseconds
 * they took. */
int64_t lt_env_shutdown(lt_env *env);
/* The record, parsed (free with curfew__json_free). */
curfew__jval *lt_env_record(lt_env *env);
/* Destroys the coordinator and removes the directory. */
void lt_env_done(lt_env *env);

/* ---- modules that log their shutdown ------------------------------------ */

/* Shared by the modules of one test: a sequence number for every shutdown
 * start and end, so order can be checked. */
typedef struct lt_log {
    atomic_int seq;
} lt_log;

/* Modules that meet: the finisher thread of each waits until the
 * shutdowns of `want` of them have started (at most LT_MEET_MS) before it
 * counts its delay, so modules that run in parallel overlap however late a
 * loaded machine runs each step; modules run one after another cannot
 * meet, and then finish after LT_MEET_MS, in order. */
#define LT_MEET_MS 5000
typedef struct lt_meet {
    atomic_int started;
    int want;
} lt_meet;

typedef struct lt_mod {
    const char *name;
    lt_log *log;
    lt_meet *meet; /* NULL: no meeting */
    int delay_ms;  /* 0: finishes inside its shutdown; > 0: CURFEW_PENDING,
                      then curfew_module_done() from a thread after that */
    int result;    /* the shutdown's error (0: success) */
    curfew_module *m;
    atomic_int calls;     /* shutdowns run */
    atomic_int start_seq; /* -1 until its shutdown started */
    atomic_int end_seq;   /* -1 until it finished */
    atomic_llong t_start_ms, t_end_ms;
    pthread_t shutdown_thread;
    pthread_t finisher;
    int has_finisher;
    int done_rc; /* what curfew_module_done() returned to the finisher */
} lt_mod;

/* Registers mod under its name with the given dependencies (NULL-ended
 * list); fails the test unless the registration returns 0. */
void lt_mod_register(curfew *cf, lt_mod *mod, lt_log *log, ...);
/* The shutdown used by lt_mod_register(). */
int lt_mod_shutdown(curfew_module *m, void *arg);
/* Joins the finisher thread, if any. */
void lt_mod_join(lt_mod *mod);

/* ---- the record --------------------------------------------------------- */

curfew__jval *lt_parse_file(const char *path);
/* o[key] of type t, failing the test otherwise. */
const curfew__jval *lt_jget(const curfew__jval *o, const char *key,
                            curfew__jtype t);
const char *lt_jstr(const curfew__jval *o, const char *key);
int64_t lt_jint(const curfew__jval *o, const char *key);
/* The blocker named name in the record's phase (NULL: any phase), or NULL.
 * *count (may be NULL) gets how many blockers of that name there are. */
const curfew__jval *lt_rec_blocker(const curfew__jval *rec, const char *phase,
                                   const char *name, unsigned *count);
/* The phase's object in the record. */
const curfew__jval *lt_rec_phase(const curfew__jval *rec, const char *phase);
/* The entry of "leaks" for module and type, or NULL (also when the record
 * has no "leaks"). */
const curfew__jval *lt_rec_leak(const curfew__jval *rec, const char *module,
                                const char *type);

/* Fails the test unless a child's wait status says "exited with 0". */
void lt_expect_exit0(int status);

/* Nanoseconds on the monotonic clock. */
int64_t lt_now_ns(void);

#endif
