/* A small test harness: one binary per module, one process per test case
 * (CTest runs `test_<module> <case>`), child helpers by re-exec of the same
 * binary (`test_<module> --child <name> [args]`), never a bare fork().
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_TEST_HARNESS_H
#define CURFEW_TEST_HARNESS_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

typedef void (*th_test_fn)(void);
typedef int (*th_child_fn)(int argc, char **argv);

void th_register_test(const char *name, th_test_fn fn);
void th_register_child(const char *name, th_child_fn fn);

/* Test case NAME: CTest finds it by this pattern in the source (one per
 * line, at the start of the line). */
#define TEST(name)                                               \
    static void test_##name(void);                               \
    __attribute__((constructor)) static void th_reg_##name(void) \
    {                                                            \
        th_register_test(#name, test_##name);                    \
    }                                                            \
    static void test_##name(void)

/* A child helper, run by th_spawn_child(); its return value is the exit
 * status of the child process. */
#define CHILD(name)                                               \
    static int child_##name(int argc, char **argv);               \
    __attribute__((constructor)) static void th_regc_##name(void) \
    {                                                             \
        th_register_child(#name, child_##name);                   \
    }                                                             \
    static int child_##name(int argc, char **argv)

void th_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                                 \
    do {                                                            \
        if (!(cond))                                                \
            th_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond); \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        int64_t th_a_ = (int64_t)(a), th_b_ = (int64_t)(b);                    \
        if (th_a_ != th_b_)                                                    \
            th_fail(__FILE__, __LINE__,                                        \
                    "%s == %s failed: %" PRId64 " != %" PRId64, #a, #b, th_a_, \
                    th_b_);                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char *th_a_ = (a), *th_b_ = (b);                               \
        if (!th_a_ || !th_b_ || strcmp(th_a_, th_b_) != 0)                   \
            th_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" != \"%s\"", \
                    #a, #b, th_a_ ? th_a_ : "(null)",                        \
                    th_b_ ? th_b_ : "(null)");                               \
    } while (0)

/* Monotonic milliseconds. */
int64_t th_now_ms(void);
/* Sleeps for ms milliseconds (restarts on EINTR). */
void th_sleep_ms(int64_t ms);

/* The whole file, NUL-terminated (len, if not NULL, gets its length
 * without the NUL); NULL if it cannot be opened or memory ran out. The
 * caller frees it. */
char *th_read_file(const char *path, size_t *len);

/* Removes the files directly in dir, then dir itself (test directories
 * hold no subdirectories). Errors are ignored: it is clean-up. */
void th_remove_dir(const char *dir);

/* Starts and joins one thread, then waits until its task has left
 * /proc/self/task (it does so a moment after the join, later on a loaded
 * machine), so that thread counts taken next start from a settled
 * process and the C library's thread machinery is warm. */
void th_warm_threads(void);

/* Starts this test binary again as `--child name args...` (NULL-terminated
 * list). Returns the child's pid; fails the test on error. */
pid_t th_spawn_child(const char *name, ...);

/* Waits up to timeout_ms for pid; returns its wait status. On timeout the
 * child is killed and the test fails. */
int th_wait_child(pid_t pid, int64_t timeout_ms);

#endif
