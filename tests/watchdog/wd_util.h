/* Helpers shared by the watchdog tests (tests/watchdog/test_*.c): temporary
 * directories, child processes that leave their findings in files, exit
 * times measured to the millisecond, and checks on parsed JSON.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_WD_UTIL_H
#define CURFEW_TEST_WD_UTIL_H

#include "harness.h"
#include "report/jsonr.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WD_PATH 512

/* CLOCK_MONOTONIC, shared by every process of the machine, so a child's
 * time stamps and the parent's can be compared. */
int64_t wd_mono_ns(void);

/* 1 in a ThreadSanitizer build. Its _exit and abort interceptors flush
 * stdio streams first (so they block on a held stdio lock), and its _exit
 * sleeps atexit_sleep_ms (1000 by default; wd_tmpdir sets it to 0 for the
 * children). */
int wd_tsan(void);

/* ---- files ----------------------------------------------------------------
 */

/* Makes a fresh directory for one test. If the test fails, the directory
 * is kept and the child's captured standard error is shown; wd_done()
 * removes it once every check passed. */
void wd_tmpdir(char *out, size_t size);
void wd_done(const char *dir);
/* dir/name into out. */
void wd_path(char *out, size_t size, const char *dir, const char *name);
/* The whole file, NUL-terminated (len without the NUL), or NULL. */
char *wd_read_file(const char *path, size_t *len);

/* ---- child side ------------------------------------------------------------
 */

/* Puts dir/stderr on descriptor 2 (th_spawn_child cannot redirect) and
 * turns core dumps off, so an abort() ends the process at once. */
void wd_child_setup(const char *dir);
/* Appends "key value" to dir/info with one write(): no stdio, no malloc,
 * safe from any thread, also while stderr's stdio lock is held. */
void wd_info(const char *dir, const char *key, int64_t value);
/* Writes text to dir/name (replacing it), with write() only. */
void wd_put_file(const char *dir, const char *name, const char *text,
                 size_t len);

/* ---- parent side -----------------------------------------------------------
 */

/* The last value recorded for key in dir/info: 1 if found, else 0. */
int wd_info_get(const char *dir, const char *key, int64_t *value);
/* As wd_info_get(), failing the test when the key is missing. */
int64_t wd_info_need(const char *dir, const char *key);
/* Waits up to timeout_ms for the child pid (killing it and failing after
 * that); returns its wait status and the monotonic time at which it was
 * seen to end, within about a millisecond. */
int wd_wait_exit(pid_t pid, int64_t timeout_ms, int64_t *t_exit_ns);
/* Fails unless status says "exited with code". */
void wd_expect_exit(int status, int code);
/* Fails unless status says "killed by signal sig". */
void wd_expect_signal(int status, int sig);

/* ---- JSON ------------------------------------------------------------------
 */

/* Parses the file or text; fails the test with the parser's message. */
curfew__jval *wd_parse_file(const char *path);
curfew__jval *wd_parse_text(const char *text, size_t len, const char *what);
/* o[key], failing the test unless it exists and has type t. */
const curfew__jval *wd_jget(const curfew__jval *o, const char *key,
                            curfew__jtype t);
const char *wd_jstr(const curfew__jval *o, const char *key);
int64_t wd_jint(const curfew__jval *o, const char *key);
int wd_jbool(const curfew__jval *o, const char *key);
int wd_jnull(const curfew__jval *o, const char *key);
/* The object of array arr whose key is the string value, or NULL. */
const curfew__jval *wd_jfind(const curfew__jval *arr, const char *key,
                             const char *value);
/* The i-th string of array arr, failing the test if it is not one. */
const char *wd_jat_str(const curfew__jval *arr, size_t i);

/* ---- text and threads
 * -------------------------------------------------------- */

/* Number of lines of text that start with prefix; *first (may be NULL)
 * gets the first one and *first_len its length without the newline. */
int wd_lines(const char *text, const char *prefix, const char **first,
             size_t *first_len);
/* Threads of this process (entries of /proc/self/task). */
int wd_task_count(void);
/* Up to max thread ids of this process into out; returns how many. */
int wd_task_ids(int *out, int max);
/* Voluntary plus involuntary context switches of thread tid, or -1. */
int64_t wd_ctx_switches(int tid);
/* Starts and joins a thread, so that a sanitizer's own helper thread (TSan
 * starts one at the first pthread_create) exists before counting. */
void wd_warm_threads(void);

#endif
