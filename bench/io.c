/* curfew-bench io: F atomic writes asked for as the shutdown begins and
 * durable when its "persist" phase ends (I1, I2), against a plain loop of
 * the same writes one after another: write a temporary file, fsync,
 * rename, fsync the directory.
 *
 * SPDX-License-Identifier: MIT
 *
 * Both sides write F new files of B bytes into a fresh directory under
 * --dir (default: the current directory; a tmpfs makes fsync free and the
 * comparison meaningless).
 */
#include "bench.h"

#include <curfew.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_int io_errors;

static void write_cb(int result, void *arg)
{
    (void)arg;
    if (result != 0)
        atomic_fetch_add(&io_errors, 1);
}

static void write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            bench_die("write: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

/* The plain way, the same steps as curfew_write_atomic (I2). */
static void naive_write(const char *dir, const char *path, const char *data,
                        size_t len)
{
    char tmp[4200];
    bench_fmt(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        bench_die("open %s: %s", tmp, strerror(errno));
    write_all(fd, data, len);
    if (fsync(fd))
        bench_die("fsync: %s", strerror(errno));
    close(fd);
    if (rename(tmp, path))
        bench_die("rename: %s", strerror(errno));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        bench_die("open %s: %s", dir, strerror(errno));
    if (fsync(dfd))
        bench_die("fsync %s: %s", dir, strerror(errno));
    close(dfd);
}

/* curfew: every write asked for, then the shutdown; the time from the
 * first request to the end of the "persist" phase. */
static int64_t run_curfew(const char *dir, int nf, const char *data, size_t len,
                          unsigned threads, curfew_io_stats *st)
{
    char path[4200];
    curfew *cf = bench_one_phase("persist", "curfew-bench io");
    int e;
    curfew_io_options o;
    memset(&o, 0, sizeof(o));
    o.phase = "persist";
    o.threads = threads;
    curfew_io *io;
    e = curfew_io_create(cf, &o, &io);
    if (e)
        bench_die("curfew_io_create: %s", curfew_strerror(e));
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < nf; i++) {
        bench_fmt(path, sizeof(path), "%s/c-%d", dir, i);
        e = curfew_write_atomic(io, path, data, len, NULL, write_cb, NULL);
        if (e)
            bench_die("curfew_write_atomic: %s", curfew_strerror(e));
    }
    curfew_begin(cf);
    e = curfew_run(cf);
    int64_t t1 = bench_now_ns();
    if (e)
        bench_die("curfew_run: %s", curfew_strerror(e));
    curfew_io_stats_get(io, st);
    if (curfew_io_destroy(io) || curfew_destroy(cf))
        bench_die("curfew_io_destroy or curfew_destroy failed");
    return t1 - t0;
}

/* The plain loop, one write after another. */
static int64_t run_naive(const char *dir, int nf, const char *data, size_t len)
{
    char path[4200];
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < nf; i++) {
        bench_fmt(path, sizeof(path), "%s/n-%d", dir, i);
        naive_write(dir, path, data, len);
    }
    return bench_now_ns() - t0;
}

int bench_io(int argc, char **argv)
{
    int64_t f64 = bench_opt_int(argc, argv, "--files", 1000);
    int64_t b64 = bench_opt_int(argc, argv, "--bytes", 4096);
    int64_t th = bench_opt_int(argc, argv, "--io-threads", 0);
    const char *base = bench_opt_str(argc, argv, "--dir", ".");
    int naive_first =
        strcmp(bench_opt_str(argc, argv, "--order", "curfew-first"),
               "naive-first") == 0;
    if (f64 < 1 || f64 > 1000000 || b64 > ((int64_t)1 << 30))
        bench_die("--files must be 1..1000000, --bytes at most 1 GiB");
    int nf = (int)f64;
    size_t len = (size_t)b64;
    char *data = malloc(len ? len : 1);
    if (!data)
        bench_die("out of memory");
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + i % 26);
    char dir[4096];
    bench_fmt(dir, sizeof(dir), "%s/curfew-bench-io.XXXXXX", base);
    if (!mkdtemp(dir))
        bench_die("mkdtemp %s: %s", dir, strerror(errno));
    char path[4200];

    atomic_init(&io_errors, 0);
    curfew_io_stats st;
    int64_t tc, tn;
    if (naive_first) {
        tn = run_naive(dir, nf, data, len);
        tc = run_curfew(dir, nf, data, len, (unsigned)th, &st);
    } else {
        tc = run_curfew(dir, nf, data, len, (unsigned)th, &st);
        tn = run_naive(dir, nf, data, len);
    }

    for (int i = 0; i < nf; i++) {
        bench_fmt(path, sizeof(path), "%s/c-%d", dir, i);
        unlink(path);
        bench_fmt(path, sizeof(path), "%s/n-%d", dir, i);
        unlink(path);
    }
    rmdir(dir);
    free(data);

    double total = (double)tc / 1e6, naive = (double)tn / 1e6;
    printf("{\"bench\":\"io\",\"files\":%d,\"bytes\":%zu,\"io_threads\":%u,"
           "\"order\":\"%s\",\"total_ms\":%.3f,\"naive_ms\":%.3f,"
           "\"ratio\":%.2f,"
           "\"written\":%llu,\"coalesced\":%llu,\"failed\":%llu,"
           "\"errors\":%d}\n",
           nf, len, th ? (unsigned)th : 2u,
           naive_first ? "naive-first" : "curfew-first", total, naive,
           naive / total, (unsigned long long)st.written,
           (unsigned long long)st.coalesced, (unsigned long long)st.failed,
           atomic_load(&io_errors));
    return st.failed || atomic_load(&io_errors) ? 1 : 0;
}
