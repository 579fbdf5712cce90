/* Helpers shared by the adapter tests (tests/adapters/test_*.c): blockers
 * finished by threads after a delay, and example programs run with their
 * standard output on a pipe.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_AD_UTIL_H
#define CURFEW_TEST_AD_UTIL_H

#include "harness.h"

#include <curfew.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* The test binary's skip status (SKIP_RETURN_CODE in cmake/adapters.cmake)
 * for an adapter whose library was not found at build time. */
#define AD_SKIP 77

/* Blockers whose triggers each start a thread that finishes them after a
 * few milliseconds (B2: CURFEW_PENDING, then done from another thread). */
typedef struct ad_jobs {
    pthread_t threads[64];
    curfew_blocker handles[64];
    int delay_ms[64];
    int n;
    _Atomic int started;
    pthread_t trigger_thread; /* the thread the triggers ran on */
    _Atomic int wrong_thread; /* a trigger ran on another thread */
    pthread_mutex_t lock;
} ad_jobs;

void ad_jobs_init(ad_jobs *j, pthread_t loop_thread);
/* Adds n blockers named prefix-1... to barrier, due after 5..5+spread ms. */
void ad_jobs_add(ad_jobs *j, curfew_barrier *barrier, const char *prefix, int n,
                 int spread_ms);
/* Joins the threads; fails unless every blocker finished with "ok" and
 * every trigger ran on the loop thread. */
void ad_jobs_check(ad_jobs *j);

/* Calls curfew_begin(cf) from a new thread after delay_ms; join it with
 * ad_join(). */
pthread_t ad_begin_later(curfew *cf, int delay_ms);
void ad_join(pthread_t t);

/* Runs path with args (NULL-terminated), its stdout on a pipe read by
 * *out_fd. */
pid_t ad_spawn(int *out_fd, const char *path, ...);
/* Reads a line (without the newline) within timeout_ms; fails the test
 * otherwise. */
void ad_read_line(int fd, char *buf, size_t size, int64_t timeout_ms);
/* Reads what is left until EOF within timeout_ms. */
void ad_read_rest(int fd, char *buf, size_t size, int64_t timeout_ms);
/* In a ThreadSanitizer build, sets atexit_sleep_ms=0 for children. */
void ad_child_env(void);

#endif
