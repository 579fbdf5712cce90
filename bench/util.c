/* curfew-bench: clocks, the shared random generator, memory and thread
 * counts, option parsing.
 *
 * SPDX-License-Identifier: MIT
 */
#include "bench.h"

#include <curfew.h>

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif

const char *bench_self = "curfew-bench";

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_cpu_ns(int clock_id)
{
    struct timespec ts;
    if (clock_gettime((clockid_t)clock_id, &ts))
        return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void bench_sleep_until_ns(int64_t t)
{
    struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
           EINTR) {
    }
}

void bench_sleep_ms(int64_t ms)
{
    bench_sleep_until_ns(bench_now_ns() + ms * 1000000);
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void bench_draw_delays(int64_t *out, size_t n, int64_t max_ns, uint64_t seed)
{
    uint64_t st = seed ? seed : 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (int64_t)(bench_rand(&st) % (uint64_t)(max_ns + 1));
}

int64_t bench_heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
    struct mallinfo2 mi = mallinfo2();
    return (int64_t)(mi.uordblks + mi.hblkhd);
#else
    return -1;
#endif
}

int64_t bench_proc_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t len = strlen(field);
    int64_t v = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = strtoll(line + len + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

int bench_thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n;
}

const char *bench_opt_str(int argc, char **argv, const char *name,
                          const char *def)
{
    for (int i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return def;
}

int64_t bench_opt_int(int argc, char **argv, const char *name, int64_t def)
{
    const char *v = bench_opt_str(argc, argv, name, NULL);
    if (!v)
        return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < 0) {
        fprintf(stderr, "curfew-bench: %s wants a whole number >= 0, not %s\n",
                name, v);
        exit(2);
    }
    return x;
}

void bench_fmt(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        bench_die("a path or text is too long");
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("curfew-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

struct curfew *bench_one_phase(const char *phase, const char *process)
{
    curfew_phase_config pc = {phase, CURFEW_NEVER, CURFEW_NEVER};
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = &pc;
    cfg.phase_count = 1;
    cfg.process_name = process;
    curfew *cf;
    int e = curfew_create(&cf, &cfg);
    if (e)
        bench_die("%s: curfew_create: %s", process, curfew_strerror(e));
    return cf;
}
