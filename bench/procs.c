/* curfew-bench procs: C real child processes, each needing M ms in its own
 * phase to shut down. curfew's way: the parent's "children" phase sends
 * Shutdown to all at once (P2). The serial way: the same children, each
 * under its own parent coordinator, shut down one after another.
 *
 * SPDX-License-Identifier: MIT
 *
 * The children are curfew-bench itself re-executed as "procs-child". Each
 * says it is ready once attached (a byte on a pipe), and the clock starts
 * only when all are, so start-up is not counted on either side.
 */
#include "bench.h"

#include <curfew.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Readiness goes through a pipe of our own, not curfew_child_send(): a
 * message queued by the child before its channel's control actor exists
 * is dropped by the library today (see the note in docs/BENCHMARKS.md). */
typedef struct ready {
    int rd, wr;
} ready;

static void ready_open(ready *rd)
{
    int fds[2];
    if (pipe(fds))
        bench_die("pipe: %s", strerror(errno));
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    rd->rd = fds[0];
    rd->wr = fds[1]; /* inherited by the children */
}

static void ready_wait(ready *rd, int want)
{
    close(rd->wr);
    int got = 0;
    int64_t end = bench_now_ns() + 120 * (int64_t)1000000000;
    while (got < want) {
        int64_t left = (end - bench_now_ns()) / 1000000;
        struct pollfd pfd = {.fd = rd->rd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
            bench_die("only %d of %d children became ready", got, want);
        char buf[64];
        ssize_t n = read(rd->rd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            bench_die("only %d of %d children became ready", got, want);
        got += (int)n;
    }
    close(rd->rd);
}

static curfew *parent_coordinator(void)
{
    return bench_one_phase("children", "curfew-bench procs");
}

static curfew_proc *spawn_child(curfew *cf, int64_t child_ms, ready *rd)
{
    char msbuf[32], fdbuf[32];
    bench_fmt(msbuf, sizeof(msbuf), "%lld", (long long)child_ms);
    bench_fmt(fdbuf, sizeof(fdbuf), "%d", rd->wr);
    char *argv[] = {(char *)bench_self, "procs-child", "--child-ms", msbuf,
                    "--ready-fd",       fdbuf,         NULL};
    curfew_proc_options o;
    memset(&o, 0, sizeof(o));
    o.name = "procs-child";
    o.shutdown_phase = "children";
    o.kill_after_ms = 60000;
    curfew_proc *p;
    int r = curfew_proc_spawn(cf, argv, &o, &p);
    if (r)
        bench_die("curfew_proc_spawn: %s", curfew_strerror(r));
    return p;
}

/* 1 if the child exited with status 0. */
static int exited_ok(curfew_proc *p)
{
    int status = 0;
    for (int i = 0; i < 5000 && curfew_proc_exited(p, &status) != 1; i++)
        bench_sleep_ms(1);
    return curfew_proc_exited(p, &status) == 1 && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

int bench_procs(int argc, char **argv)
{
    int64_t c64 = bench_opt_int(argc, argv, "--children", 64);
    int64_t m = bench_opt_int(argc, argv, "--child-ms", 100);
    if (c64 < 1 || c64 > 4096)
        bench_die("--children must be 1..4096");
    int c = (int)c64;
    curfew_proc **procs = calloc((size_t)c, sizeof(*procs));
    curfew **cfs = calloc((size_t)c, sizeof(*cfs));
    if (!procs || !cfs)
        bench_die("out of memory");
    ready rd;
    int failed = 0;

    /* curfew: one phase, Shutdown to all at once. */
    curfew *cf = parent_coordinator();
    ready_open(&rd);
    for (int i = 0; i < c; i++)
        procs[i] = spawn_child(cf, m, &rd);
    ready_wait(&rd, c);
    int64_t t0 = bench_now_ns();
    curfew_begin(cf);
    int e = curfew_run(cf);
    int64_t t1 = bench_now_ns();
    if (e)
        bench_die("curfew_run: %s", curfew_strerror(e));
    for (int i = 0; i < c; i++) {
        failed += !exited_ok(procs[i]);
        curfew_proc_free(procs[i]);
    }
    curfew_destroy(cf);

    /* serial: the same children, one waited for after another. */
    ready_open(&rd);
    for (int i = 0; i < c; i++) {
        cfs[i] = parent_coordinator();
        procs[i] = spawn_child(cfs[i], m, &rd);
    }
    ready_wait(&rd, c);
    int64_t s0 = bench_now_ns();
    for (int i = 0; i < c; i++) {
        curfew_begin(cfs[i]);
        e = curfew_run(cfs[i]);
        if (e)
            bench_die("curfew_run: %s", curfew_strerror(e));
    }
    int64_t s1 = bench_now_ns();
    for (int i = 0; i < c; i++) {
        failed += !exited_ok(procs[i]);
        curfew_proc_free(procs[i]);
        curfew_destroy(cfs[i]);
    }

    double total = (double)(t1 - t0) / 1e6, serial = (double)(s1 - s0) / 1e6;
    printf("{\"bench\":\"procs\",\"children\":%d,\"child_ms\":%lld,"
           "\"total_ms\":%.3f,\"serial_ms\":%.3f,\"ratio\":%.2f,"
           "\"overhead_ms\":%.3f,\"failed_children\":%d}\n",
           c, (long long)m, total, serial, serial / total, total - (double)m,
           failed);
    free(procs);
    free(cfs);
    return failed ? 1 : 0;
}

/* ---- the child --------------------------------------------------------- */

typedef struct child_work {
    curfew_blocker self;
    int64_t ms;
} child_work;

static void *work_thread(void *arg)
{
    child_work *w = arg;
    bench_sleep_ms(w->ms);
    curfew_blocker_done(w->self);
    return NULL;
}

/* The child's own work: done child_ms after its phase starts. */
static int work_trigger(curfew_blocker self, void *arg)
{
    child_work *w = arg;
    w->self = self;
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&th, &at, work_thread, w);
    pthread_attr_destroy(&at);
    return e ? -e : CURFEW_PENDING;
}

int bench_procs_child(int argc, char **argv)
{
    static child_work w;
    w.ms = bench_opt_int(argc, argv, "--child-ms", 100);
    curfew *cf = bench_one_phase("work", "curfew-bench procs-child");
    int e = curfew_add_blocker(curfew_phase(cf, "work"), "child work",
                               work_trigger, &w, NULL);
    if (e)
        bench_die("child: curfew_add_blocker: %s", curfew_strerror(e));
    curfew_child_options co;
    memset(&co, 0, sizeof(co));
    co.fast_exit = 1;
    co.exit_code = 0;
    e = curfew_child_attach_opts(cf, &co);
    if (e)
        bench_die("child: curfew_child_attach_opts: %s", curfew_strerror(e));
    int fd = (int)bench_opt_int(argc, argv, "--ready-fd", 0);
    if (fd > 2) {
        while (write(fd, "r", 1) < 0 && errno == EINTR) {
        }
        close(fd);
    }
    /* Returns only if the fast exit did not happen. */
    e = curfew_run(cf);
    return e ? 1 : 0;
}
