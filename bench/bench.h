/* curfew-bench: shared helpers of the benchmark subcommands. Not installed;
 * the benchmarks use only the public API (<curfew.h>).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_BENCH_H
#define CURFEW_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* The program's own path, for re-executing itself in a child mode. */
extern const char *bench_self;

/* CLOCK_MONOTONIC in nanoseconds; the same clock in every process of the
 * machine, so a child's timestamps compare with the parent's. */
int64_t bench_now_ns(void);
void bench_sleep_until_ns(int64_t t);
/* CPU time of a clock (CLOCK_THREAD_CPUTIME_ID, CLOCK_PROCESS_CPUTIME_ID)
 * in nanoseconds: on a loaded machine it leaves out the time spent waiting
 * for a CPU. */
int64_t bench_cpu_ns(int clock_id);
void bench_sleep_ms(int64_t ms);

/* xorshift64*: the same generator, seeds and arithmetic as the Go and Rust
 * peers, so every program draws the same delays. */
uint64_t bench_rand(uint64_t *state);
/* N delays uniform in [0, max_ns], in nanoseconds. */
void bench_draw_delays(int64_t *out, size_t n, int64_t max_ns, uint64_t seed);

/* Heap in use by malloc (glibc's mallinfo2: arena plus mmapped blocks), in
 * bytes; -1 where there is no mallinfo2. */
int64_t bench_heap_bytes(void);
/* A field of /proc/self/status in bytes ("VmRSS", "VmHWM"); -1 if none. */
int64_t bench_proc_status_bytes(const char *field);
/* Threads of this process (entries of /proc/self/task); -1 if unknown. */
int bench_thread_count(void);

/* Command-line options: "--name value". Returns the value, or def when the
 * option is absent; exits with status 2 on a malformed number. */
int64_t bench_opt_int(int argc, char **argv, const char *name, int64_t def);
const char *bench_opt_str(int argc, char **argv, const char *name,
                          const char *def);

/* snprintf that exits with status 1 instead of cutting the text. */
void bench_fmt(char *out, size_t size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A coordinator with one phase whose timers are off, so nothing but the
 * work decides when it ends (the watchdog thread still starts at
 * curfew_begin, W1). Exits on error. */
struct curfew;
struct curfew *bench_one_phase(const char *phase, const char *process);

/* Prints a message and exits with status 1. */
void bench_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

/* Subcommands: each prints one JSON object on one line and returns the
 * exit status. */
int bench_phase(int argc, char **argv);
int bench_procs(int argc, char **argv);
int bench_procs_child(int argc, char **argv);
int bench_io(int argc, char **argv);
int bench_watchdog(int argc, char **argv);
int bench_watchdog_child(int argc, char **argv);
int bench_idle(int argc, char **argv);

#endif /* CURFEW_BENCH_H */
