/* Helpers shared by the os tests (tests/os/test_*.c): temporary
 * directories, files, child processes that report through a pipe.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_OS_UTIL_H
#define CURFEW_TEST_OS_UTIL_H

#include "harness.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OS_PATH 512

/* A fresh directory for one test (removed by os_done()); in a
 * ThreadSanitizer build it also sets atexit_sleep_ms=0 for the children,
 * whose _exit would otherwise sleep a second. */
void os_tmpdir(char *out, size_t size);
void os_done(const char *dir);
void os_path(char *out, size_t size, const char *dir, const char *name);
/* The whole file, NUL-terminated, or NULL (free it). */
char *os_read_file(const char *path);
/* Waits up to timeout_ms for path to exist and hold text (NULL: any);
 * returns its content or fails the test. */
char *os_wait_file(const char *path, const char *text, int64_t timeout_ms);

/* A pipe whose write end a child inherits: fds[1] is passed to the child
 * as a number, fds[0] keeps FD_CLOEXEC. */
void os_pipe(int fds[2]);
/* Reads one byte from fd within timeout_ms; fails the test otherwise. */
char os_read_byte(int fd, int64_t timeout_ms);
/* Child side: writes one byte to the descriptor named by text (ignored
 * when NULL). Async-signal-safe. */
void os_put_byte(int fd, char c);

/* Puts dir/name on descriptor 2 in a child (th_spawn_child cannot
 * redirect). */
void os_redirect_stderr(const char *path);
/* Threads of this process. The first call starts and joins a thread, so
 * that a sanitizer's own background thread (ThreadSanitizer starts one at
 * the first pthread_create) is counted from the start. */
int os_count_threads(void);
/* os_count_threads() once it is want, or after limit_ms: threads that were
 * joined leave /proc/self/task a moment after the join. */
int os_wait_threads(int want, int64_t limit_ms);

#endif
