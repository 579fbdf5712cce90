/* Atomic writes: CONTRACT.md I2 (crash consistency, modes, backups, the
 * temporary file and what is planted at its name).
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "io_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LARGE_REC (256 * 1024)

/* The size of version gen: small and large alternate, so a file that
 * mixed two versions could not pass for either. */
static size_t rec_size(uint64_t gen)
{
    return gen % 2 ? LARGE_REC + (size_t)(gen % 997) : 64 + (size_t)(gen % 61);
}

static void write_rec(const char *path, uint64_t gen)
{
    size_t n;
    char *rec = io_make_rec(gen, rec_size(gen), &n);
    io_put_file(path, rec, n);
    free(rec);
}

/* The version in path: 0 and *gen, or the test fails with why. */
static uint64_t need_rec(const char *path, const char *what)
{
    size_t n;
    char *data = io_read_file(path, &n);
    if (!data)
        th_fail(__FILE__, __LINE__, "%s: %s is missing (%s)", what, path,
                strerror(errno));
    uint64_t gen = 0;
    const char *why;
    if (io_parse_rec(data, n, &gen, &why) != 0)
        th_fail(__FILE__, __LINE__, "%s: %s is not one whole version: %s", what,
                path, why);
    free(data);
    return gen;
}

/* The generation in the header of path, read without the payload; 0 when
 * it cannot be read. */
static uint64_t head_gen(const char *path)
{
    char head[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t k = read(fd, head, sizeof(head) - 1);
    close(fd);
    if (k <= 0)
        return 0;
    head[k] = '\0';
    uint64_t gen = 0;
    if (sscanf(head, "CFW1 %" SCNu64, &gen) != 1)
        return 0;
    return gen;
}

/* Rewrites argv[0] with curfew_write_atomic, one version after another
 * (argv[1]: backup 0/1), argv[2] times (0: until killed), then shuts down
 * cleanly. Each version is the one before plus one. */
CHILD(io_rewriter)
{
    if (argc < 3)
        return 2;
    const char *path = argv[0];
    curfew_write_options o;
    memset(&o, 0, sizeof(o));
    o.backup = atoi(argv[1]);
    long count = atol(argv[2]);
    uint64_t gen = need_rec(path, "child start");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    io_waiter w;
    io_waiter_init(&w);
    for (long i = 0; count == 0 || i < count; i++) {
        gen++;
        size_t n;
        char *rec = io_make_rec(gen, rec_size(gen), &n);
        int r = curfew_write_atomic(io, path, rec, n, &o, io_cb, &w);
        free(rec);
        if (r != 0)
            return 4;
        io_waiter_wait(&w, (int)i + 1, 20000);
        if (w.errors)
            return 5;
    }
    io_shutdown(cf, 20000);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_waiter_destroy(&w);
    return 0;
}

/* Removes the temporary files a killed child left in dir; fails if there
 * are more than one write can leave (a temporary file and a backup link). */
static void sweep_leftovers(const char *dir, pid_t pid)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), ".data.tmp-%ld-", (long)pid);
    int tmps = io_count_prefix(dir, prefix);
    snprintf(prefix, sizeof(prefix), ".data.bak-%ld-", (long)pid);
    int baks = io_count_prefix(dir, prefix);
    if (tmps > 1 || baks > 1)
        th_fail(__FILE__, __LINE__,
                "killed child %ld left %d temporary files and %d backup links",
                (long)pid, tmps, baks);
    if (io_count_prefix(dir, ".") != tmps + baks)
        th_fail(__FILE__, __LINE__, "temporary files of another process");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    char path[IO_PATH];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".data.", 6) == 0) {
            io_path(path, sizeof(path), dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

/* One file rewritten and killed over and over; four run side by side so
 * the 200 process starts fit in the time limit under the sanitizers. */
struct crash_slot {
    pthread_t th;
    char dir[IO_PATH], path[IO_PATH], bak[IO_PATH];
    int kills;
    uint32_t rng;
    uint64_t last;
    int after_more; /* kills that found a newer version than seen */
};

static void *crash_loop(void *arg)
{
    struct crash_slot *sl = arg;
    for (int i = 0; i < sl->kills; i++) {
        uint64_t before = head_gen(sl->path);
        pid_t pid = th_spawn_child("io_rewriter", sl->path, i % 2 ? "1" : "0",
                                   "0", (char *)NULL);
        /* Kill only once the child is in its write loop. */
        int64_t end = th_now_ms() + 20000;
        while (head_gen(sl->path) <= before) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid)
                th_fail(__FILE__, __LINE__, "rewriter exited early: %d", st);
            if (th_now_ms() > end) {
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                th_fail(__FILE__, __LINE__, "rewriter made no progress");
            }
            usleep(200);
        }
        uint64_t seen = head_gen(sl->path);
        /* Anywhere in a write: one takes some 5-20 ms here (two fsyncs). */
        usleep(io_rand(&sl->rng) % 20000);
        kill(pid, SIGKILL);
        int st;
        CHECK_EQ(waitpid(pid, &st, 0), pid);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* I2: wholly old or wholly new. */
        uint64_t gen = need_rec(sl->path, "after SIGKILL");
        CHECK(gen >= seen);
        CHECK(gen >= sl->last);
        if (gen > seen)
            sl->after_more++;
        sl->last = gen;
        if (access(sl->bak, F_OK) == 0) {
            uint64_t bgen = need_rec(sl->bak, "backup after SIGKILL");
            CHECK(bgen <= gen);
        }
        sweep_leftovers(sl->dir, pid);
    }
    return NULL;
}

/* I2: a child rewrites a file over and over (sizes alternating, every
 * version self-checking) and is killed with SIGKILL at a random instant,
 * 200 times in all, half of the children with backups: after every kill
 * the file is wholly one version, never empty, cut or mixed, and never
 * older than one the child had already written; the backup is a whole
 * older version. A killed child leaves at most its one temporary file
 * (and backup link); a clean run at the end leaves none. */
TEST(io_crash_consistency)
{
    char dir[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    static struct crash_slot sl[4];
    int64_t start = th_now_ms();
    for (int k = 0; k < 4; k++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", k);
        io_path(sl[k].dir, sizeof(sl[k].dir), dir, name);
        CHECK_EQ(mkdir(sl[k].dir, 0700), 0);
        io_path(sl[k].path, sizeof(sl[k].path), sl[k].dir, "data");
        io_path(sl[k].bak, sizeof(sl[k].bak), sl[k].dir, "data.bak");
        write_rec(sl[k].path, 1);
        sl[k].last = 1;
        sl[k].kills = 50;
        sl[k].rng = ((uint32_t)getpid() + (uint32_t)k) * 2654435761u;
        CHECK_EQ(pthread_create(&sl[k].th, NULL, crash_loop, &sl[k]), 0);
    }
    int kills = 0, after_more = 0;
    for (int k = 0; k < 4; k++) {
        pthread_join(sl[k].th, NULL);
        kills += sl[k].kills;
        after_more += sl[k].after_more;
    }
    fprintf(stderr, "%d kills in %" PRId64 " ms, %d after further writes\n",
            kills, th_now_ms() - start, after_more);

    /* A clean run leaves only the file and its backup. */
    pid_t pid =
        th_spawn_child("io_rewriter", sl[0].path, "1", "20", (char *)NULL);
    int st = th_wait_child(pid, 60000);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ(need_rec(sl[0].path, "after a clean run"), sl[0].last + 20);
    CHECK_EQ(need_rec(sl[0].bak, "backup after a clean run"), sl[0].last + 19);
    CHECK_EQ(io_count_entries(sl[0].dir), 2);
    io_rmtree(dir);
}

/* I2: writes in this process leave no temporary file behind, with or
 * without backups, and the contents are exactly what was asked for. */
TEST(io_clean_run_leaves_no_temp)
{
    char dir[IO_PATH], a[IO_PATH], b[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(a, sizeof(a), dir, "a.json");
    io_path(b, sizeof(b), dir, "b.json");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 2);
    io_waiter w;
    io_waiter_init(&w);
    curfew_write_options bk = {.mode = 0, .backup = 1};
    for (int i = 0; i < 50; i++) {
        char text[64];
        int n = snprintf(text, sizeof(text), "{\"round\": %d}\n", i);
        CHECK_EQ(curfew_write_atomic(io, a, text, (size_t)n, NULL, io_cb, &w),
                 0);
        CHECK_EQ(curfew_write_atomic(io, b, text, (size_t)n, &bk, io_cb, &w),
                 0);
        io_waiter_wait(&w, 2 * (i + 1), 10000);
    }
    CHECK_EQ(w.errors, 0);
    CHECK(io_file_is(a, "{\"round\": 49}\n", 14));
    CHECK(io_file_is(b, "{\"round\": 49}\n", 14));
    char bak[IO_PATH];
    io_path(bak, sizeof(bak), dir, "b.json.bak");
    CHECK(io_file_is(bak, "{\"round\": 48}\n", 14));
    /* An empty write is a write too: the file becomes empty. */
    CHECK_EQ(curfew_write_atomic(io, a, NULL, 0, NULL, io_cb, &w), 0);
    io_waiter_wait(&w, 101, 10000);
    CHECK_EQ(w.errors, 0);
    CHECK(io_file_is(a, "", 0));
    io_shutdown(cf, 10000);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(io_count_entries(dir), 3); /* a.json, b.json, b.json.bak */
    CHECK_EQ(io_count_prefix(dir, "."), 0);
    io_waiter_destroy(&w);
    io_rmtree(dir);
}

static void write_and_wait(curfew_io *io, const char *path, const char *text,
                           const curfew_write_options *o, int expect)
{
    io_waiter w;
    io_waiter_init(&w);
    CHECK_EQ(curfew_write_atomic(io, path, text, strlen(text), o, io_cb, &w),
             0);
    io_waiter_wait(&w, 1, 10000);
    CHECK_EQ(w.last, expect);
    io_waiter_destroy(&w);
}

/* I2: an existing file keeps its mode, whatever opts.mode says; a new file
 * gets 0644 less the umask, or opts.mode (applied as given). */
TEST(io_modes)
{
    char dir[IO_PATH], p[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 0);
    curfew_write_options o;
    memset(&o, 0, sizeof(o));

    mode_t old = umask(022);
    io_path(p, sizeof(p), dir, "new-default");
    write_and_wait(io, p, "x", NULL, 0);
    CHECK_EQ(io_mode_of(p), 0644);

    umask(077);
    io_path(p, sizeof(p), dir, "new-umask077");
    write_and_wait(io, p, "x", NULL, 0);
    CHECK_EQ(io_mode_of(p), 0600);
    umask(022);

    o.mode = 0600;
    io_path(p, sizeof(p), dir, "new-0600");
    write_and_wait(io, p, "x", &o, 0);
    CHECK_EQ(io_mode_of(p), 0600);

    o.mode = 0640;
    io_path(p, sizeof(p), dir, "new-0640");
    write_and_wait(io, p, "x", &o, 0);
    CHECK_EQ(io_mode_of(p), 0640);

    /* Existing files: their mode stays, opts.mode or not, backup or not. */
    io_path(p, sizeof(p), dir, "kept-0600");
    io_put_file(p, "old", 3);
    CHECK_EQ(chmod(p, 0600), 0);
    write_and_wait(io, p, "new", NULL, 0);
    CHECK_EQ(io_mode_of(p), 0600);
    CHECK(io_file_is(p, "new", 3));

    io_path(p, sizeof(p), dir, "kept-0751");
    io_put_file(p, "old", 3);
    CHECK_EQ(chmod(p, 0751), 0);
    o.mode = 0644;
    o.backup = 1;
    write_and_wait(io, p, "new", &o, 0);
    CHECK_EQ(io_mode_of(p), 0751);

    io_path(p, sizeof(p), dir, "kept-0400");
    io_put_file(p, "old", 3);
    CHECK_EQ(chmod(p, 0400), 0);
    o.mode = 0;
    o.backup = 0;
    write_and_wait(io, p, "new", &o, 0);
    CHECK_EQ(io_mode_of(p), 0400);
    CHECK(io_file_is(p, "new", 3));
    umask(old);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

struct watcher {
    const char *path, *bak;
    atomic_int stop;
    atomic_int bak_seen;
    long stats, missing, bak_missing;
};

static void *watch_path(void *arg)
{
    struct watcher *wt = arg;
    struct stat st;
    while (!atomic_load(&wt->stop)) {
        wt->stats++;
        if (stat(wt->path, &st) != 0 && errno == ENOENT)
            wt->missing++;
        if (stat(wt->bak, &st) == 0)
            atomic_store(&wt->bak_seen, 1);
        else if (errno == ENOENT && atomic_load(&wt->bak_seen))
            wt->bak_missing++;
    }
    return NULL;
}

/* I2: with opts.backup the old contents are kept in "<path>.bak" (after
 * every write, the version before it), and neither the target nor, once
 * made, the backup is ever missing: a thread stat()s them in a tight loop
 * during many backup writes and never sees ENOENT. Without an old file
 * there is nothing to back up; without opts.backup no backup is made. */
TEST(io_backup)
{
    char dir[IO_PATH], path[IO_PATH], bak[IO_PATH], other[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(path, sizeof(path), dir, "state");
    io_path(bak, sizeof(bak), dir, "state.bak");
    io_path(other, sizeof(other), dir, "plain");
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 2);
    curfew_write_options o;
    memset(&o, 0, sizeof(o));
    o.backup = 1;

    write_and_wait(io, path, "v0", &o, 0);
    CHECK(io_file_is(path, "v0", 2));
    CHECK(access(bak, F_OK) != 0); /* nothing to back up */
    write_and_wait(io, path, "v1", &o, 0);
    CHECK(io_file_is(path, "v1", 2));
    CHECK(io_file_is(bak, "v0", 2));

    write_and_wait(io, other, "p0", NULL, 0);
    write_and_wait(io, other, "p1", NULL, 0);
    char obak[IO_PATH];
    io_path(obak, sizeof(obak), dir, "plain.bak");
    CHECK(access(obak, F_OK) != 0);

    struct watcher wt = {.path = path, .bak = bak};
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, watch_path, &wt), 0);
    int rounds = io_tsan() ? 150 : 400;
    for (int i = 2; i < rounds; i++) {
        char text[32], prev[32];
        snprintf(text, sizeof(text), "v%d", i);
        snprintf(prev, sizeof(prev), "v%d", i - 1);
        write_and_wait(io, path, text, &o, 0);
        CHECK(io_file_is(path, text, strlen(text)));
        CHECK(io_file_is(bak, prev, strlen(prev)));
    }
    atomic_store(&wt.stop, 1);
    pthread_join(th, NULL);
    fprintf(stderr, "%ld stat() rounds during %d backup writes\n", wt.stats,
            rounds);
    CHECK(wt.stats > 0);
    CHECK_EQ(wt.missing, 0);
    CHECK_EQ(wt.bak_missing, 0);
    CHECK_EQ(io_count_prefix(dir, "."), 0);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

/* I2: a process killed between the backup's rename and the final rename
 * leaves "<path>.bak" as a second link to the file itself. The next backup
 * write then renames a link over another link to the same file, which
 * rename(2) does nothing for: the write must still leave no temporary
 * link behind, and the backup must hold the old contents. */
TEST(io_backup_after_crash_between_renames)
{
    char dir[IO_PATH], path[IO_PATH], bak[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(path, sizeof(path), dir, "data");
    io_path(bak, sizeof(bak), dir, "data.bak");
    io_put_file(path, "v0", 2);
    CHECK_EQ(link(path, bak), 0); /* the state such a crash leaves */
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    curfew_write_options o;
    memset(&o, 0, sizeof(o));
    o.backup = 1;
    write_and_wait(io, path, "v1", &o, 0);
    CHECK(io_file_is(path, "v1", 2));
    CHECK(io_file_is(bak, "v0", 2));
    CHECK_EQ(io_count_prefix(dir, "."), 0);
    CHECK_EQ(io_count_entries(dir), 2);
    write_and_wait(io, path, "v2", &o, 0);
    CHECK(io_file_is(bak, "v1", 2));
    CHECK_EQ(io_count_entries(dir), 2);
    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

/* The temporary name curfew_write_atomic will try n-th for path in this
 * process (docs/io.md: "<dir>/.<base>.<tag>-<pid>-<n>", n counting the
 * names one io object made, from 0). */
static void tmp_name_for(char *out, size_t size, const char *dir,
                         const char *base, const char *tag, unsigned n)
{
    char name[128];
    snprintf(name, sizeof(name), ".%s.%s-%ld-%u", base, tag, (long)getpid(), n);
    io_path(out, size, dir, name);
}

/* I2: O_EXCL|O_NOFOLLOW. A symbolic link to another file, a dangling link,
 * a directory and a regular file planted at the temporary names a fresh io
 * object tries first are never written through, followed or removed; the
 * write takes another name and succeeds. */
TEST(io_planted_temp_names)
{
    char dir[IO_PATH], path[IO_PATH], victim[IO_PATH], ghost[IO_PATH];
    char t[4][IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(path, sizeof(path), dir, "data");
    io_path(victim, sizeof(victim), dir, "victim");
    io_path(ghost, sizeof(ghost), dir, "ghost");
    io_put_file(path, "old", 3);
    io_put_file(victim, "victim", 6);
    for (unsigned i = 0; i < 4; i++)
        tmp_name_for(t[i], sizeof(t[i]), dir, "data", "tmp", i);
    CHECK_EQ(symlink(victim, t[0]), 0);
    CHECK_EQ(symlink(ghost, t[1]), 0);
    CHECK_EQ(mkdir(t[2], 0700), 0);
    io_put_file(t[3], "planted", 7);

    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    write_and_wait(io, path, "new contents", NULL, 0);
    CHECK(io_file_is(path, "new contents", 12));
    struct stat st;
    CHECK_EQ(lstat(path, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK(io_file_is(victim, "victim", 6));
    CHECK(access(ghost, F_OK) != 0);
    CHECK_EQ(lstat(t[0], &st), 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK_EQ(lstat(t[1], &st), 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK_EQ(lstat(t[2], &st), 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK(io_file_is(t[3], "planted", 7));
    /* data, victim and the four planted names; nothing else. */
    CHECK_EQ(io_count_entries(dir), 6);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

/* I2: the same for the backup's temporary link. A name taken at the
 * backup's temporary name (a link planted there, or left by an earlier
 * process with the same pid — common in containers, where a service often
 * has the same pid at every start) is never written through or removed,
 * and the write still succeeds with the backup made. */
TEST(io_planted_backup_names)
{
    char dir[IO_PATH], path[IO_PATH], victim[IO_PATH], bak[IO_PATH];
    char t[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    io_path(path, sizeof(path), dir, "data");
    io_path(bak, sizeof(bak), dir, "data.bak");
    io_path(victim, sizeof(victim), dir, "victim");
    io_put_file(path, "old", 3);
    io_put_file(victim, "victim", 6);
    /* A fresh io object names the write's temporary file 0, the backup's
     * link 1. */
    tmp_name_for(t, sizeof(t), dir, "data", "bak", 1);
    CHECK_EQ(symlink(victim, t), 0);

    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    curfew_write_options o;
    memset(&o, 0, sizeof(o));
    o.backup = 1;
    write_and_wait(io, path, "new", &o, 0);
    CHECK(io_file_is(path, "new", 3));
    CHECK(io_file_is(bak, "old", 3));
    CHECK(io_file_is(victim, "victim", 6));
    struct stat st;
    CHECK_EQ(lstat(t, &st), 0);
    CHECK(S_ISLNK(st.st_mode));
    CHECK_EQ(io_count_entries(dir), 4);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    io_rmtree(dir);
}

/* I2: the path may be relative (the temporary file then goes in the
 * current directory) and may be a symbolic link, which the write replaces
 * with the file (the link's target is left as it was). */
TEST(io_relative_path_and_link_target)
{
    char dir[IO_PATH], cwd[IO_PATH], real[IO_PATH], link_path[IO_PATH];
    io_tmpdir(dir, sizeof(dir));
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    CHECK_EQ(chdir(dir), 0);
    curfew *cf = io_new_cf();
    curfew_io *io = io_new_io(cf, NULL, 1);
    write_and_wait(io, "relative.txt", "rel", NULL, 0);
    CHECK(io_file_is("relative.txt", "rel", 3));

    io_path(real, sizeof(real), dir, "real");
    io_path(link_path, sizeof(link_path), dir, "link");
    io_put_file(real, "real", 4);
    CHECK_EQ(symlink(real, link_path), 0);
    write_and_wait(io, link_path, "replaced", NULL, 0);
    struct stat st;
    CHECK_EQ(lstat(link_path, &st), 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK(io_file_is(link_path, "replaced", 8));
    CHECK(io_file_is(real, "real", 4));
    CHECK_EQ(io_count_entries(dir), 3);

    io_destroy_io(io, 5000);
    CHECK_EQ(curfew_destroy(cf), 0);
    CHECK_EQ(chdir(cwd), 0);
    io_rmtree(dir);
}
