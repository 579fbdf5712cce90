/* Durable I/O (contract section I), written against the public core API.
 *
 * SPDX-License-Identifier: MIT
 *
 * One mutex (io->mu) guards the job FIFO, the per-path write entries, the
 * queues and the deferred tasks. Jobs run on a small pool of threads,
 * started on first use; a second kind of thread, also started on first
 * use, keeps the deferred tasks' timers and runs them. User callbacks
 * never run with io->mu held.
 *
 * Lock order: io->mu may be held while calling the core (adding or
 * finishing a blocker); the core never calls back with its own lock held.
 */
#define _GNU_SOURCE
#include "io/io_internal.h"

#include <curfew/io.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16
#define DEFAULT_THREADS 2

curfew__io_faults curfew__io_fault;

void curfew__io_fail_nth(int op, int nth, int err)
{
    atomic_store(&curfew__io_fault.count[op], 0);
    atomic_store(&curfew__io_fault.err[op], err);
    atomic_store(&curfew__io_fault.at[op], nth);
}

/* 0, or the injected negative errno for this call of op. */
static int fault(int op)
{
    int at = atomic_load(&curfew__io_fault.at[op]);
    if (at <= 0)
        return 0;
    int n = atomic_fetch_add(&curfew__io_fault.count[op], 1) + 1;
    if (n != at)
        return 0;
    atomic_store(&curfew__io_fault.at[op], 0);
    return -atomic_load(&curfew__io_fault.err[op]);
}

typedef struct cbent {
    struct cbent *next;
    curfew_io_cb cb;
    void *arg;
} cbent;

/* The newest not-yet-started write of a path, with every callback it
 * answers for (I3). */
typedef struct wreq {
    void *data;
    size_t len;
    mode_t mode;
    int backup;
    cbent *cbs, *cbs_tail;
    unsigned requests;
} wreq;

/* One per path with work queued or running: writes to one path are
 * serialised, writes to different paths run in parallel. */
typedef struct wentry {
    struct wentry *next; /* hash chain */
    char *path;
    wreq *pending;
    int running;
    int queued; /* a job for it is in the FIFO */
} wentry;

enum { J_WRITE, J_QUEUE, J_DEFERRED };

typedef struct job {
    struct job *next;
    int kind;
    void *obj;
} job;

typedef struct op {
    struct op *next;
    curfew_op_fn fn;
    void *arg;
    int is_close;
} op;

struct curfew_queue {
    curfew_io *io;
    char *name;
    op *head, *tail;
    int scheduled, close_queued, closed, blocker_pending;
    curfew_blocker blocker;
    curfew_queue *next; /* io->queues */
};

struct curfew_deferred {
    curfew_io *io;
    char *name;
    int32_t delay_ms;
    curfew_deferred_fn fn;
    void *arg;
    int armed, running, rearm, finalized, finalize_run, blocker_pending;
    int scheduled; /* a J_DEFERRED job for it is in the FIFO */
    int64_t due_ns;
    pthread_t runner;
    curfew_blocker blocker;
    curfew_deferred *next; /* io->deferreds */
};

#define NBUCKETS 256

struct curfew_io {
    curfew *cf;
    curfew_barrier *phase;
    char *name;
    const char *site_file, *site_func; /* the creator's call site (B1) */
    int site_line;
    pthread_mutex_t mu;
    pthread_cond_t job_cv;   /* I/O threads wait for jobs */
    pthread_cond_t timer_cv; /* the timer thread waits for deadlines */
    pthread_cond_t done_cv;  /* finalize waiters */
    job *jhead, *jtail;
    wentry *buckets[NBUCKETS];
    unsigned want_threads, nthreads, idle_threads, queued_jobs;
    pthread_t threads[MAX_THREADS];
    int timer_started;
    pthread_t timer;
    int stop;
    unsigned running_jobs;
    uint64_t busy;         /* write requests accepted, callbacks not yet run */
    _Atomic uint64_t owed; /* write requests whose callback has not started */
    int triggered, blocker_done;
    int err; /* first write error during the shutdown (I6) */
    curfew_blocker blocker;
    curfew_queue *queues;
    curfew_deferred *deferreds;
    _Atomic unsigned long tmp_seq;
    curfew_io_stats st;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the atomic write (I2) ------------------------------------------------
 */

static int write_full(int fd, const char *p, size_t n)
{
    while (n) {
        int f = fault(CURFEW__IO_WRITE);
        if (f)
            return f;
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int do_fsync(int fd)
{
    int f = fault(CURFEW__IO_FSYNC);
    if (f)
        return f;
    return fsync(fd) < 0 ? -errno : 0;
}

static int do_rename(const char *from, const char *to)
{
    int f = fault(CURFEW__IO_RENAME);
    if (f)
        return f;
    return rename(from, to) < 0 ? -errno : 0;
}

/* tmp gets "<dir>/.<base>.<tag>-<pid>-<n>" for path. */
static int tmp_name(curfew_io *io, const char *path, const char *tag, char *tmp,
                    size_t size)
{
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path + 1) : 0;
    const char *base = slash ? slash + 1 : path;
    unsigned long n = atomic_fetch_add(&io->tmp_seq, 1);
    int k = snprintf(tmp, size, "%.*s.%s.%s-%ld-%lu", dlen, path, base, tag,
                     (long)getpid(), n);
    return k < 0 || (size_t)k >= size ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return -ENAMETOOLONG;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = do_fsync(fd);
    close(fd);
    return r;
}

static int atomic_write(curfew_io *io, const char *path, const wreq *w)
{
    char tmp[PATH_MAX];
    if (!*path || path[strlen(path) - 1] == '/')
        return -EINVAL;
    struct stat st;
    int exists = stat(path, &st) == 0;
    int fd = -1, r = 0;
    /* O_EXCL and O_NOFOLLOW: a file or symlink planted at the temporary
     * name is never written through; another name is tried. */
    for (int tries = 0; tries < 100; tries++) {
        r = tmp_name(io, path, "tmp", tmp, sizeof(tmp));
        if (r)
            return r;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  w->mode ? w->mode : 0644);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0)
        return -errno;
    if (exists)
        r = fchmod(fd, st.st_mode & 07777) < 0 ? -errno : 0;
    else if (w->mode)
        r = fchmod(fd, w->mode & 07777) < 0 ? -errno : 0;
    if (!r)
        r = write_full(fd, w->data, w->len);
    if (!r)
        r = do_fsync(fd);
    if (close(fd) < 0 && !r)
        r = -errno;
    if (!r && w->backup && exists) {
        /* The backup comes from a hard link, renamed over the old backup:
         * path itself is never missing. */
        char bak[PATH_MAX], baktmp[PATH_MAX];
        if (snprintf(bak, sizeof(bak), "%s.bak", path) >= (int)sizeof(bak))
            r = -ENAMETOOLONG;
        for (int tries = 0; !r && tries < 100; tries++) {
            r = tmp_name(io, path, "bak", baktmp, sizeof(baktmp));
            if (r)
                break;
            if (link(path, baktmp) == 0)
                break;
            r = -errno;
            if (r == -EEXIST && tries < 99)
                r = 0;
            else
                break;
        }
        if (!r) {
            r = do_rename(baktmp, bak);
            /* Also on success: when bak is already a link to the same
             * file (a crash between the two renames), rename() does
             * nothing and leaves baktmp. */
            unlink(baktmp);
        }
    }
    if (!r)
        r = do_rename(tmp, path);
    if (r) {
        unlink(tmp);
        return r;
    }
    return fsync_dir(path);
}

/* ---- threads and jobs -----------------------------------------------------
 */

static void *io_thread(void *arg);
static void run_deferred_job(curfew_io *io, curfew_deferred *d, job *j);

/* With io->mu held. Threads start on first use: an io object nobody
 * writes through costs no thread. */
static void push_job(curfew_io *io, int kind, void *obj, job *j)
{
    j->next = NULL;
    j->kind = kind;
    j->obj = obj;
    if (io->jtail)
        io->jtail->next = j;
    else
        io->jhead = j;
    io->jtail = j;
    io->queued_jobs++;
    if (io->queued_jobs > io->idle_threads && io->nthreads < io->want_threads &&
        pthread_create(&io->threads[io->nthreads], NULL, io_thread, io) == 0)
        io->nthreads++;
    pthread_cond_signal(&io->job_cv);
}

/* With io->mu held: finishes the io's blocker once nothing is left. */
static void check_idle(curfew_io *io)
{
    if (io->busy == 0 && io->triggered && !io->blocker_done) {
        io->blocker_done = 1;
        if (io->err)
            curfew_blocker_fail(io->blocker, io->err, "write failed");
        else
            curfew_blocker_done(io->blocker);
        io->err = 0;
    }
}

static unsigned hash_path(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NBUCKETS;
}

static wentry **find_entry(curfew_io *io, const char *path)
{
    wentry **pp = &io->buckets[hash_path(path)];
    while (*pp && strcmp((*pp)->path, path) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void free_wreq(wreq *w)
{
    cbent *c = w->cbs;
    while (c) {
        cbent *n = c->next;
        free(c);
        c = n;
    }
    free(w->data);
    free(w);
}

static void run_write(curfew_io *io, wentry *e, job *j)
{
    wreq *w = e->pending;
    e->pending = NULL;
    e->running = 1;
    e->queued = 0;
    pthread_mutex_unlock(&io->mu);

    int r = atomic_write(io, e->path, w);
    for (cbent *c = w->cbs; c; c = c->next) {
        /* From here on destroy only waits for this thread. */
        atomic_fetch_sub(&io->owed, 1);
        if (c->cb)
            c->cb(r, c->arg);
    }

    pthread_mutex_lock(&io->mu);
    e->running = 0;
    if (r && !io->err && curfew_current_phase(io->cf) != NULL)
        io->err = r;
    if (r)
        io->st.failed++;
    else
        io->st.written++;
    io->busy -= w->requests;
    if (e->pending) {
        e->queued = 1;
        push_job(io, J_WRITE, e, j);
        j = NULL;
    } else {
        wentry **pp = find_entry(io, e->path);
        *pp = e->next;
        free(e->path);
        free(e);
    }
    free(j);
    check_idle(io);
    pthread_mutex_unlock(&io->mu);
    free_wreq(w);
    pthread_mutex_lock(&io->mu);
}

static void run_queue(curfew_io *io, curfew_queue *q, job *j)
{
    op *o = q->head;
    q->head = o->next;
    if (!q->head)
        q->tail = NULL;
    pthread_mutex_unlock(&io->mu);
    if (o->fn)
        o->fn(o->arg);
    pthread_mutex_lock(&io->mu);
    if (o->is_close) {
        q->closed = 1;
        if (q->blocker_pending) {
            q->blocker_pending = 0;
            curfew_blocker_done(q->blocker);
        }
        pthread_cond_broadcast(&io->done_cv);
    }
    free(o);
    if (q->head) {
        /* One operation at a time per queue, in order (I5); back to the
         * end of the FIFO so other work is not starved. */
        push_job(io, J_QUEUE, q, j);
    } else {
        q->scheduled = 0;
        free(j);
        pthread_cond_broadcast(&io->done_cv);
    }
}

static void *io_thread(void *arg)
{
    curfew_io *io = arg;
    pthread_mutex_lock(&io->mu);
    for (;;) {
        while (!io->jhead && !io->stop) {
            io->idle_threads++;
            pthread_cond_wait(&io->job_cv, &io->mu);
            io->idle_threads--;
        }
        if (!io->jhead)
            break;
        job *j = io->jhead;
        io->jhead = j->next;
        if (!io->jhead)
            io->jtail = NULL;
        io->queued_jobs--;
        io->running_jobs++;
        if (j->kind == J_WRITE)
            run_write(io, j->obj, j);
        else if (j->kind == J_QUEUE)
            run_queue(io, j->obj, j);
        else
            run_deferred_job(io, j->obj, j);
        io->running_jobs--;
        pthread_cond_broadcast(&io->done_cv);
    }
    pthread_mutex_unlock(&io->mu);
    return NULL;
}

static int io_trigger(curfew_blocker self, void *arg)
{
    curfew_io *io = arg;
    (void)self;
    pthread_mutex_lock(&io->mu);
    io->triggered = 1;
    int done = io->busy == 0 && !io->blocker_done;
    int err = 0;
    if (done) {
        io->blocker_done = 1;
        err = io->err;
        io->err = 0;
    }
    pthread_mutex_unlock(&io->mu);
    if (err)
        return err;
    return done ? CURFEW_DONE : CURFEW_PENDING;
}

int curfew_io_create_at(curfew *cf, const curfew_io_options *opts,
                        curfew_io **out, const char *file, int line,
                        const char *func)
{
    if (out)
        *out = NULL;
    if (!cf || !out)
        return -EINVAL;
    curfew_io_options o = {0};
    if (opts)
        o = *opts;
    curfew_barrier *ph = curfew_phase(cf, o.phase ? o.phase : "persist");
    if (!ph)
        return -EINVAL;
    curfew_io *io = calloc(1, sizeof(*io));
    if (!io)
        return -ENOMEM;
    io->name = strdup(o.name ? o.name : "curfew io");
    if (!io->name) {
        free(io);
        return -ENOMEM;
    }
    io->cf = cf;
    io->phase = ph;
    io->want_threads = o.threads ? o.threads : DEFAULT_THREADS;
    if (io->want_threads > MAX_THREADS)
        io->want_threads = MAX_THREADS;
    pthread_mutex_init(&io->mu, NULL);
    pthread_cond_init(&io->job_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&io->timer_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&io->done_cv, NULL);
    io->site_file = file;
    io->site_line = line;
    io->site_func = func;
    int r = curfew_add_blocker_at(ph, io->name, io_trigger, io, &io->blocker,
                                  file, line, func);
    if (r) {
        pthread_mutex_destroy(&io->mu);
        pthread_cond_destroy(&io->job_cv);
        pthread_cond_destroy(&io->timer_cv);
        pthread_cond_destroy(&io->done_cv);
        free(io->name);
        free(io);
        return r;
    }
    *out = io;
    return 0;
}

/* With io->mu held: makes sure a pending blocker covers new work. After
 * the io's blocker finished while its phase still waits, a new one is
 * added (B2: the wait waits for it); after the phase, -ESHUTDOWN (I1). */
static int cover(curfew_io *io)
{
    /* A phase the watchdog completed (W3, CONTINUE) is over too. */
    if (curfew_barrier_state(io->phase) == CURFEW_COMPLETE)
        return -ESHUTDOWN;
    if (!io->blocker_done)
        return 0;
    curfew_blocker b;
    int r = curfew_add_blocker_at(io->phase, io->name, NULL, NULL, &b,
                                  io->site_file, io->site_line, io->site_func);
    if (r)
        return r;
    io->blocker = b;
    io->blocker_done = 0;
    return 0;
}

int curfew_write_atomic(curfew_io *io, const char *path, const void *data,
                        size_t len, const curfew_write_options *opts,
                        curfew_io_cb cb, void *arg)
{
    if (!io || !path || !*path || (len && !data))
        return -EINVAL;
    wreq *w = calloc(1, sizeof(*w));
    cbent *c = calloc(1, sizeof(*c));
    void *copy = malloc(len ? len : 1);
    wentry *e = calloc(1, sizeof(*e));
    char *pcopy = strdup(path);
    job *j = malloc(sizeof(*j));
    if (!w || !c || !copy || !e || !pcopy || !j) {
        free(w);
        free(c);
        free(copy);
        free(e);
        free(pcopy);
        free(j);
        return -ENOMEM;
    }
    if (len)
        memcpy(copy, data, len);
    w->data = copy;
    w->len = len;
    w->mode = opts ? opts->mode : 0;
    w->backup = opts ? opts->backup : 0;
    c->cb = cb;
    c->arg = arg;
    w->cbs = w->cbs_tail = c;
    w->requests = 1;

    pthread_mutex_lock(&io->mu);
    int r = cover(io);
    if (r) {
        pthread_mutex_unlock(&io->mu);
        free_wreq(w);
        free(e);
        free(pcopy);
        free(j);
        return r;
    }
    io->st.requested++;
    io->busy++;
    atomic_fetch_add(&io->owed, 1);
    wentry **pp = find_entry(io, path);
    if (*pp) {
        free(e);
        free(pcopy);
        e = *pp;
    } else {
        e->path = pcopy;
        *pp = e;
    }
    if (e->pending) {
        /* Coalesce (I3): the newest data wins, every caller hears. */
        wreq *old = e->pending;
        w->cbs = old->cbs;
        old->cbs_tail->next = c;
        w->cbs_tail = c;
        w->requests += old->requests;
        old->cbs = NULL;
        free_wreq(old);
        io->st.coalesced++;
    }
    e->pending = w;
    if (!e->running && !e->queued) {
        e->queued = 1;
        push_job(io, J_WRITE, e, j);
        j = NULL;
    }
    pthread_mutex_unlock(&io->mu);
    free(j);
    return 0;
}

int curfew_io_stats_get(const curfew_io *io, curfew_io_stats *out)
{
    if (!io || !out)
        return -EINVAL;
    curfew_io *m = (curfew_io *)io;
    pthread_mutex_lock(&m->mu);
    *out = m->st;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

int curfew_io_destroy(curfew_io *io)
{
    if (!io)
        return -EINVAL;
    pthread_mutex_lock(&io->mu);
    if (atomic_load(&io->owed) || io->queues || io->deferreds) {
        pthread_mutex_unlock(&io->mu);
        return -EBUSY;
    }
    io->stop = 1;
    pthread_cond_broadcast(&io->job_cv);
    pthread_cond_broadcast(&io->timer_cv);
    unsigned n = io->nthreads;
    int timer = io->timer_started;
    pthread_mutex_unlock(&io->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(io->threads[i], NULL);
    if (timer)
        pthread_join(io->timer, NULL);
    /* A blocker that never triggered would hold its phase: gone with us. */
    if (!io->triggered)
        curfew_remove_blocker(io->blocker);
    pthread_mutex_destroy(&io->mu);
    pthread_cond_destroy(&io->job_cv);
    pthread_cond_destroy(&io->timer_cv);
    pthread_cond_destroy(&io->done_cv);
    free(io->name);
    free(io);
    return 0;
}

/* ---- queues (I5) -----------------------------------------------------------
 */

static int queue_append(curfew_queue *q, curfew_op_fn fn, void *arg,
                        int is_close)
{
    curfew_io *io = q->io;
    op *o = calloc(1, sizeof(*o));
    job *j = malloc(sizeof(*j));
    if (!o || !j) {
        free(o);
        free(j);
        return -ENOMEM;
    }
    o->fn = fn;
    o->arg = arg;
    o->is_close = is_close;
    /* Caller holds io->mu. */
    if (q->tail)
        q->tail->next = o;
    else
        q->head = o;
    q->tail = o;
    if (is_close)
        q->close_queued = 1;
    if (!q->scheduled) {
        q->scheduled = 1;
        push_job(io, J_QUEUE, q, j);
    } else {
        free(j);
    }
    return 0;
}

static int queue_trigger(curfew_blocker self, void *arg)
{
    curfew_queue *q = arg;
    curfew_io *io = q->io;
    (void)self;
    pthread_mutex_lock(&io->mu);
    int r = CURFEW_PENDING;
    if (q->closed) {
        r = CURFEW_DONE;
    } else {
        q->blocker_pending = 1;
        if (!q->close_queued && queue_append(q, NULL, NULL, 1) != 0) {
            q->blocker_pending = 0;
            r = -ENOMEM;
        }
    }
    pthread_mutex_unlock(&io->mu);
    return r;
}

int curfew_queue_create_at(curfew_io *io, const char *name, curfew_queue **out,
                           const char *file, int line, const char *func)
{
    if (out)
        *out = NULL;
    if (!io || !name || !*name || !out)
        return -EINVAL;
    curfew_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    q->name = strdup(name);
    if (!q->name) {
        free(q);
        return -ENOMEM;
    }
    q->io = io;
    int r = curfew_add_blocker_at(io->phase, q->name, queue_trigger, q,
                                  &q->blocker, file, line, func);
    if (r) {
        free(q->name);
        free(q);
        return r;
    }
    pthread_mutex_lock(&io->mu);
    q->next = io->queues;
    io->queues = q;
    pthread_mutex_unlock(&io->mu);
    *out = q;
    return 0;
}

int curfew_queue_post(curfew_queue *q, curfew_op_fn fn, void *arg)
{
    if (!q || !fn)
        return -EINVAL;
    pthread_mutex_lock(&q->io->mu);
    int r = q->close_queued ? -ESHUTDOWN : queue_append(q, fn, arg, 0);
    pthread_mutex_unlock(&q->io->mu);
    return r;
}

int curfew_queue_close(curfew_queue *q, curfew_op_fn close_fn, void *arg)
{
    if (!q)
        return -EINVAL;
    pthread_mutex_lock(&q->io->mu);
    int r = q->close_queued ? -EALREADY : queue_append(q, close_fn, arg, 1);
    pthread_mutex_unlock(&q->io->mu);
    return r;
}

int curfew_queue_is_closed(const curfew_queue *q)
{
    if (!q)
        return -EINVAL;
    pthread_mutex_lock(&q->io->mu);
    int c = q->closed;
    pthread_mutex_unlock(&q->io->mu);
    return c;
}

int curfew_queue_free(curfew_queue *q)
{
    if (!q)
        return -EINVAL;
    curfew_io *io = q->io;
    pthread_mutex_lock(&io->mu);
    /* Closed, and its last job (which may still hold q) has let go. */
    if (!q->closed || q->scheduled) {
        pthread_mutex_unlock(&io->mu);
        return -EBUSY;
    }
    curfew_queue **pp = &io->queues;
    while (*pp != q)
        pp = &(*pp)->next;
    *pp = q->next;
    /* Its blocker may still wait for its phase's trigger, which must not
     * touch freed memory: take it away (-ENOENT if it finished). */
    curfew_remove_blocker(q->blocker);
    pthread_mutex_unlock(&io->mu);
    free(q->name);
    free(q);
    return 0;
}

/* ---- deferred tasks (I4) ----------------------------------------------------
 */

/* With io->mu held: finishes a finalized task's blocker once nothing of it
 * runs or waits to run. */
static void deferred_check(curfew_deferred *d)
{
    if (d->finalized && !d->running && !d->finalize_run && !d->scheduled &&
        d->blocker_pending) {
        d->blocker_pending = 0;
        curfew_blocker_done(d->blocker);
    }
}

/* With io->mu held: runs d's task on this thread. */
static void run_task_here(curfew_io *io, curfew_deferred *d)
{
    d->armed = 0;
    d->finalize_run = 0;
    d->running = 1;
    d->runner = pthread_self();
    pthread_mutex_unlock(&io->mu);
    d->fn(d, d->arg);
    pthread_mutex_lock(&io->mu);
    d->running = 0;
    if (d->rearm) {
        d->rearm = 0;
        if (d->finalized) {
            d->finalize_run = 1;
        } else {
            d->armed = 1;
            d->due_ns = mono_ns() + (int64_t)d->delay_ms * 1000000;
        }
    }
    /* A finalize may wait for a run after this one. */
    pthread_cond_broadcast(&io->timer_cv);
    deferred_check(d);
    pthread_cond_broadcast(&io->done_cv);
}

/* With io->mu held: takes d's queued job out of the FIFO. */
static void unschedule(curfew_io *io, curfew_deferred *d)
{
    job *prev = NULL;
    for (job *j = io->jhead; j; prev = j, j = j->next) {
        if (j->kind != J_DEFERRED || j->obj != d)
            continue;
        if (prev)
            prev->next = j->next;
        else
            io->jhead = j->next;
        if (io->jtail == j)
            io->jtail = prev;
        io->queued_jobs--;
        free(j);
        break;
    }
    d->scheduled = 0;
}

static void run_deferred_job(curfew_io *io, curfew_deferred *d, job *j)
{
    free(j);
    d->scheduled = 0;
    run_task_here(io, d);
}

/* Keeps the deadlines; a due task goes to the I/O threads as a job, so
 * tasks run in parallel and this thread never waits for user code. */
static void *timer_thread(void *arg)
{
    curfew_io *io = arg;
    pthread_mutex_lock(&io->mu);
    while (!io->stop) {
        int64_t now = mono_ns(), next = INT64_MAX;
        for (curfew_deferred *d = io->deferreds; d; d = d->next) {
            if (d->running || d->scheduled)
                continue;
            if (d->finalize_run || (d->armed && d->due_ns <= now)) {
                job *j = malloc(sizeof(*j));
                if (!j) {
                    next = now + 10000000; /* try again in 10 ms */
                    continue;
                }
                d->armed = 0;
                d->scheduled = 1;
                push_job(io, J_DEFERRED, d, j);
                continue;
            }
            if (d->armed && d->due_ns < next)
                next = d->due_ns;
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&io->timer_cv, &io->mu);
        } else {
            struct timespec ts = {.tv_sec = next / 1000000000,
                                  .tv_nsec = next % 1000000000};
            pthread_cond_timedwait(&io->timer_cv, &io->mu, &ts);
        }
    }
    pthread_mutex_unlock(&io->mu);
    return NULL;
}

/* With io->mu held. */
static int start_timer(curfew_io *io)
{
    if (io->timer_started)
        return 0;
    int r = -pthread_create(&io->timer, NULL, timer_thread, io);
    if (r == 0)
        io->timer_started = 1;
    return r;
}

static int deferred_trigger(curfew_blocker self, void *arg)
{
    curfew_deferred *d = arg;
    curfew_io *io = d->io;
    (void)self;
    pthread_mutex_lock(&io->mu);
    d->finalized = 1;
    if (d->armed || d->rearm) {
        d->armed = 0;
        d->rearm = 0;
        d->finalize_run = 1;
        pthread_cond_broadcast(&io->timer_cv);
    }
    int r = CURFEW_DONE;
    if (d->running || d->finalize_run || d->scheduled) {
        d->blocker_pending = 1;
        r = CURFEW_PENDING;
    }
    pthread_mutex_unlock(&io->mu);
    return r;
}

int curfew_deferred_create_at(curfew_io *io, const char *name, int32_t delay_ms,
                              curfew_deferred_fn fn, void *arg,
                              curfew_deferred **out, const char *file, int line,
                              const char *func)
{
    if (out)
        *out = NULL;
    if (!io || !name || !*name || !fn || delay_ms < 0 || !out)
        return -EINVAL;
    curfew_deferred *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->name = strdup(name);
    if (!d->name) {
        free(d);
        return -ENOMEM;
    }
    d->io = io;
    d->delay_ms = delay_ms;
    d->fn = fn;
    d->arg = arg;
    int r = curfew_add_blocker_at(io->phase, d->name, deferred_trigger, d,
                                  &d->blocker, file, line, func);
    if (r) {
        free(d->name);
        free(d);
        return r;
    }
    pthread_mutex_lock(&io->mu);
    d->next = io->deferreds;
    io->deferreds = d;
    pthread_mutex_unlock(&io->mu);
    *out = d;
    return 0;
}

int curfew_deferred_arm(curfew_deferred *d)
{
    if (!d)
        return -EINVAL;
    curfew_io *io = d->io;
    pthread_mutex_lock(&io->mu);
    int r = 0;
    if (d->finalized) {
        r = -ESHUTDOWN;
    } else if (d->running) {
        d->rearm = 1;
    } else if (!d->armed && !d->scheduled) {
        /* The timer starts with the first arm (C6). */
        r = start_timer(io);
        if (r == 0) {
            /* An armed run is never postponed. */
            d->armed = 1;
            d->due_ns = mono_ns() + (int64_t)d->delay_ms * 1000000;
            pthread_cond_broadcast(&io->timer_cv);
        }
    }
    pthread_mutex_unlock(&io->mu);
    return r;
}

int curfew_deferred_disarm(curfew_deferred *d)
{
    if (!d)
        return -EINVAL;
    curfew_io *io = d->io;
    pthread_mutex_lock(&io->mu);
    d->armed = 0;
    d->rearm = 0;
    if (d->scheduled && !d->finalize_run)
        unschedule(io, d);
    pthread_mutex_unlock(&io->mu);
    return 0;
}

int curfew_deferred_finalize(curfew_deferred *d)
{
    if (!d)
        return -EINVAL;
    curfew_io *io = d->io;
    pthread_mutex_lock(&io->mu);
    if (d->running && pthread_equal(d->runner, pthread_self())) {
        pthread_mutex_unlock(&io->mu);
        return -EDEADLK;
    }
    if (d->finalized) {
        /* Finalized by its phase perhaps: still wait for what runs. */
        while (d->running || d->finalize_run || d->scheduled)
            pthread_cond_wait(&io->done_cv, &io->mu);
        pthread_mutex_unlock(&io->mu);
        return -EALREADY;
    }
    d->finalized = 1;
    if (d->armed || d->rearm || d->scheduled) {
        d->armed = 0;
        d->rearm = 0;
        if (d->running) {
            /* After the current run, at once, on an I/O thread. */
            d->finalize_run = 1;
            pthread_cond_broadcast(&io->timer_cv);
        } else {
            /* At once, here: no thread to wait for. */
            if (d->scheduled)
                unschedule(io, d);
            run_task_here(io, d);
        }
    }
    while (d->running || d->finalize_run || d->scheduled)
        pthread_cond_wait(&io->done_cv, &io->mu);
    deferred_check(d);
    pthread_mutex_unlock(&io->mu);
    return 0;
}

int curfew_deferred_is_armed(const curfew_deferred *d)
{
    if (!d)
        return -EINVAL;
    pthread_mutex_lock(&d->io->mu);
    int r = d->armed || d->rearm || d->finalize_run || d->scheduled;
    pthread_mutex_unlock(&d->io->mu);
    return r;
}

int curfew_deferred_is_running(const curfew_deferred *d)
{
    if (!d)
        return -EINVAL;
    pthread_mutex_lock(&d->io->mu);
    int r = d->running;
    pthread_mutex_unlock(&d->io->mu);
    return r;
}

int curfew_deferred_free(curfew_deferred *d)
{
    if (!d)
        return -EINVAL;
    int r = curfew_deferred_finalize(d);
    if (r == -EDEADLK)
        return r;
    curfew_io *io = d->io;
    pthread_mutex_lock(&io->mu);
    curfew_deferred **pp = &io->deferreds;
    while (*pp != d)
        pp = &(*pp)->next;
    *pp = d->next;
    /* Its blocker may still wait for its phase's trigger, which must not
     * touch freed memory: take it away. */
    if (!d->blocker_pending)
        curfew_remove_blocker(d->blocker);
    pthread_mutex_unlock(&io->mu);
    free(d->name);
    free(d);
    return 0;
}
