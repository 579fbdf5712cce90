/* curfew-history: an asynchronous database that must be closed (contract
 * item I5; the "asynchronous databases need to be AsyncClosed()" case).
 *
 * A browsing history lives in SQLite. Every database operation goes
 * through one curfew_queue, so it runs on the I/O thread, one at a time, in
 * order: the first operation opens the database, then producer threads post
 * one insert each per visit (the I/O thread groups them into transactions).
 * SIGTERM and SIGINT begin the shutdown with curfew_begin_from_signal().
 *
 * The shutdown, phase by phase:
 *   stop-accepting  the "producers" blocker puts sqlite3_close at the end of
 *                   the queue (curfew_queue_close: from now on a post is
 *                   refused with -ESHUTDOWN), then stops the producers and
 *                   joins them;
 *   persist         the queue's blocker finishes only after the close ran,
 *                   that is after every insert accepted before it.
 * No insert is cut in half, none that was accepted is lost.
 *
 * Afterwards the program reopens the database read-only and compares:
 * it exits 0 only if the database gained exactly as many rows as
 * curfew_queue_post() accepted.
 *
 *   curfew-history [--db PATH] [--inserts N] [--signal-after-ms M]
 *                  [--record PATH] [--producers P]
 *
 * Only the public API is used.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <curfew.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PRODUCERS 64
/* A transaction is committed when the queue holds no more inserts, or
 * after this many rows. */
#define MAX_BATCH 1000
/* A producer posts bursts of 1 to BURST_MAX inserts, BURST_PAUSE_MS apart. */
#define BURST_MAX 32
#define BURST_PAUSE_MS 2

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static uint32_t rng_next(uint32_t *state)
{
    /* xorshift32: enough to vary the bursts. */
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* ---- the program's state ------------------------------------------------ */

/* What the I/O thread owns. The queue runs one operation at a time, so
 * these fields are only touched by one thread at a time; the main thread
 * reads them after the queue's close ran and the shutdown completed. */
struct database {
    const char *path;
    sqlite3 *db;
    sqlite3_stmt *insert;
    int in_txn;
    long batch;       /* rows in the open transaction */
    long rows_before; /* rows the database held when it was opened */
    long committed;   /* rows inserted by committed transactions */
    int failed;       /* a SQLite call failed; the message is in error */
    char error[256];  /* the first failure */
    int closed;       /* sqlite3_close() succeeded */
    long ran_after_close_queued; /* inserts that ran after the close was
                                    queued, before sqlite3_close */
};

struct app {
    curfew *cf;
    curfew_queue *q;
    struct database d;

    unsigned nproducers;
    pthread_t producers[MAX_PRODUCERS];
    unsigned started; /* producer threads created */
    long max_inserts; /* stop producing after this many */
    atomic_long next; /* the next insert's number, over all producers */
    atomic_int stop;  /* set by the "producers" blocker */
    atomic_uint running;

    atomic_long accepted; /* curfew_queue_post() returned 0 */
    atomic_long refused;  /* it returned -ESHUTDOWN */
    atomic_long post_errors;
    atomic_long queued; /* accepted (or about to be) and not run yet */
    atomic_long ran;    /* insert operations that ran */
    long ran_when_close_queued;

    int64_t t_start;  /* CLOCK_MONOTONIC, ms */
    char phases[512]; /* "name N ms, ..." built by on_event */
};

/* One visit to insert: owned by the operation once posted. */
struct visit {
    struct app *app;
    unsigned producer;
    long seq;
    int64_t when_ms; /* wall clock */
};

/* The coordinator for the signal handler: set before the handlers are
 * installed, cleared only after they are removed. */
static curfew *signal_cf;
/* The signal that began the shutdown, 0 if something else did. Only the
 * main thread takes SIGTERM and SIGINT (every other thread blocks them), so
 * the main thread reads what its own handler wrote. */
static volatile sig_atomic_t began_by;

static void on_signal(int sig)
{
    int saved = errno;
    if (curfew_begin_from_signal(signal_cf) == 0)
        began_by = sig;
    errno = saved;
}

/* ---- operations on the I/O thread ------------------------------------- */

static void db_fail(struct database *d, const char *what)
{
    if (!d->failed) {
        d->failed = 1;
        snprintf(d->error, sizeof d->error, "%s: %s", what,
                 d->db ? sqlite3_errmsg(d->db) : "no database");
    }
}

static int db_exec(struct database *d, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && !d->failed) {
        d->failed = 1;
        snprintf(d->error, sizeof d->error, "%s: %s", sql,
                 msg ? msg : sqlite3_errstr(rc));
    }
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : -1;
}

static void db_commit(struct database *d)
{
    if (!d->in_txn)
        return;
    d->in_txn = 0;
    if (db_exec(d, "COMMIT") == 0)
        d->committed += d->batch;
    else
        sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    d->batch = 0;
}

/* The queue's first operation. */
static void open_db(void *arg)
{
    struct database *d = arg;
    int rc = sqlite3_open_v2(d->path, &d->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        db_fail(d, "sqlite3_open_v2");
        sqlite3_close(d->db);
        d->db = NULL;
        return;
    }
    sqlite3_busy_timeout(d->db, 5000);
    if (db_exec(d, "PRAGMA journal_mode=WAL") != 0 ||
        db_exec(d, "PRAGMA synchronous=FULL") != 0 ||
        db_exec(d, "CREATE TABLE IF NOT EXISTS visits ("
                   " id INTEGER PRIMARY KEY,"
                   " url TEXT NOT NULL,"
                   " title TEXT NOT NULL,"
                   " visited_ms INTEGER NOT NULL,"
                   " producer INTEGER NOT NULL,"
                   " seq INTEGER NOT NULL)") != 0)
        return;

    sqlite3_stmt *count = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT count(*) FROM visits", -1, &count,
                           NULL) != SQLITE_OK ||
        sqlite3_step(count) != SQLITE_ROW)
        db_fail(d, "counting the rows");
    else
        d->rows_before = (long)sqlite3_column_int64(count, 0);
    sqlite3_finalize(count);

    if (sqlite3_prepare_v2(d->db,
                           "INSERT INTO visits (url, title, visited_ms,"
                           " producer, seq) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &d->insert, NULL) != SQLITE_OK)
        db_fail(d, "preparing the insert");
}

/* One insert; transactions group the inserts that queued up meanwhile. */
static void insert_visit(void *arg)
{
    struct visit *v = arg;
    struct app *a = v->app;
    struct database *d = &a->d;

    if (d->db && d->insert && !d->failed) {
        char url[128], title[96];
        snprintf(url, sizeof url, "https://example.org/p%u/page-%ld",
                 v->producer, v->seq);
        snprintf(title, sizeof title, "Page %ld, visited from tab %u", v->seq,
                 v->producer);
        if (!d->in_txn && db_exec(d, "BEGIN") == 0) {
            d->in_txn = 1;
            d->batch = 0;
        }
        sqlite3_bind_text(d->insert, 1, url, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(d->insert, 2, title, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(d->insert, 3, v->when_ms);
        sqlite3_bind_int(d->insert, 4, (int)v->producer);
        sqlite3_bind_int64(d->insert, 5, v->seq);
        if (sqlite3_step(d->insert) == SQLITE_DONE)
            d->batch++;
        else
            db_fail(d, "insert");
        sqlite3_reset(d->insert);
    } else if (!d->failed) {
        db_fail(d, "insert");
    }

    atomic_fetch_add(&a->ran, 1);
    long left = atomic_fetch_sub(&a->queued, 1) - 1;
    if (d->in_txn && (left <= 0 || d->batch >= MAX_BATCH))
        db_commit(d);
    free(v);
}

/* The queue's close (curfew_queue_close): it runs after every operation
 * posted before it, and then the queue's blocker in "persist" finishes. */
static void close_db(void *arg)
{
    struct app *a = arg;
    struct database *d = &a->d;
    d->ran_after_close_queued = atomic_load(&a->ran) - a->ran_when_close_queued;
    if (!d->db)
        return;
    db_commit(d);
    sqlite3_finalize(d->insert);
    d->insert = NULL;
    if (sqlite3_close(d->db) != SQLITE_OK) {
        db_fail(d, "sqlite3_close");
    } else {
        d->db = NULL;
        d->closed = 1;
    }
}

/* ---- producers ---------------------------------------------------------- */

struct producer {
    struct app *app;
    unsigned index;
};

static struct producer producer_args[MAX_PRODUCERS];

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    struct app *a = p->app;
    uint32_t rng = 2463534242u + 7919u * p->index;

    while (!atomic_load(&a->stop)) {
        unsigned burst = 1 + rng_next(&rng) % BURST_MAX;
        for (unsigned i = 0; i < burst && !atomic_load(&a->stop); i++) {
            long seq = atomic_fetch_add(&a->next, 1);
            if (seq >= a->max_inserts)
                goto out;
            struct visit *v = malloc(sizeof *v);
            if (!v) {
                atomic_fetch_add(&a->post_errors, 1);
                goto out;
            }
            v->app = a;
            v->producer = p->index;
            v->seq = seq;
            v->when_ms = now_ms(CLOCK_REALTIME);
            atomic_fetch_add(&a->queued, 1);
            int rc = curfew_queue_post(a->q, insert_visit, v);
            if (rc == 0) {
                atomic_fetch_add(&a->accepted, 1);
                continue;
            }
            /* Refused: never run, so not ours to count as inserted. */
            atomic_fetch_sub(&a->queued, 1);
            free(v);
            if (rc == -ESHUTDOWN) {
                atomic_fetch_add(&a->refused, 1);
            } else {
                fprintf(stderr, "curfew-history: curfew_queue_post: %s\n",
                        curfew_strerror(rc));
                atomic_fetch_add(&a->post_errors, 1);
            }
            goto out;
        }
        sleep_ms(BURST_PAUSE_MS);
    }
out:
    /* The last producer to finish its share begins a normal shutdown;
     * -EALREADY when a signal began it first. */
    if (atomic_fetch_sub(&a->running, 1) == 1)
        curfew_begin(a->cf);
    return NULL;
}

/* The "producers" blocker of stop-accepting, on the dispatching thread. */
static int stop_producers(curfew_blocker self, void *arg)
{
    struct app *a = arg;

    /* The close goes at the end of the queue now: what was accepted before
     * runs first, every later post is refused with -ESHUTDOWN. */
    a->ran_when_close_queued = atomic_load(&a->ran);
    int rc = curfew_queue_close(a->q, close_db, a);

    curfew_blocker_status(self, "joining %u producers", a->started);
    atomic_store(&a->stop, 1);
    for (unsigned i = 0; i < a->started; i++)
        pthread_join(a->producers[i], NULL);
    a->started = 0;
    return rc == 0 ? CURFEW_DONE : rc;
}

static void on_event(const curfew_event *ev, void *arg)
{
    struct app *a = arg;
    size_t n = strlen(a->phases);
    switch (ev->type) {
    case CURFEW_EV_BEGIN:
        printf("shutdown began %" PRId64 " ms after the start (%s)\n",
               now_ms(CLOCK_MONOTONIC) - a->t_start,
               began_by == SIGTERM  ? "SIGTERM"
               : began_by == SIGINT ? "SIGINT"
                                    : "every insert was posted");
        break;
    case CURFEW_EV_PHASE_END:
        snprintf(a->phases + n, sizeof a->phases - n, "%s%s %" PRId64 " ms",
                 n ? ", " : "", ev->phase, ev->duration_ms);
        break;
    case CURFEW_EV_BLOCKER_FAILED:
        fprintf(stderr, "curfew-history: blocker %s failed: %s (%s)\n",
                ev->blocker, ev->text ? ev->text : "",
                curfew_strerror(ev->error));
        break;
    case CURFEW_EV_WARNING:
        fprintf(stderr, "curfew-history: %s is slow:\n%s\n", ev->barrier,
                ev->text ? ev->text : "");
        break;
    default:
        break;
    }
}

/* ---- the self-sent signal ------------------------------------------------ */

struct alarm {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t after_ms;
    int cancel;
    int fired;
};

static void *alarm_main(void *arg)
{
    struct alarm *al = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(al->after_ms / 1000);
    deadline.tv_nsec += (long)(al->after_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&al->mu);
    while (!al->cancel &&
           pthread_cond_timedwait(&al->cv, &al->mu, &deadline) != ETIMEDOUT)
        ;
    al->fired = !al->cancel;
    pthread_mutex_unlock(&al->mu);
    if (al->fired)
        kill(getpid(), SIGTERM);
    return NULL;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: curfew-history [--db PATH] [--inserts N] "
            "[--signal-after-ms M]\n"
            "                      [--record PATH] [--producers P]\n"
            "  --db PATH             the SQLite database (history.db)\n"
            "  --inserts N           stop producing after N inserts "
            "(10000)\n"
            "  --signal-after-ms M   send ourselves SIGTERM after M ms "
            "(-1: never)\n"
            "  --record PATH         write the shutdown record there\n"
            "  --producers P         producer threads, 1 to %d (4)\n",
            MAX_PRODUCERS);
}

static int parse_long(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return -1;
    *out = v;
    return 0;
}

/* Rows in the database, opened read-only; -1 on failure. */
static long count_rows(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long n = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM visits", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "curfew-history: reading %s: %s\n", path,
                db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int check(const char *what, int rc)
{
    if (rc < 0)
        fprintf(stderr, "curfew-history: %s: %s\n", what, curfew_strerror(rc));
    return rc;
}

int main(int argc, char **argv)
{
    static struct app a;
    const char *record = NULL;
    long signal_after = -1, producers = 4;
    a.d.path = "history.db";
    a.max_inserts = 10000;

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        int bad = 0;
        if (strcmp(opt, "--db") == 0)
            a.d.path = val;
        else if (strcmp(opt, "--record") == 0)
            record = val;
        else if (strcmp(opt, "--inserts") == 0)
            bad = parse_long(val, 0, &a.max_inserts);
        else if (strcmp(opt, "--signal-after-ms") == 0)
            bad = parse_long(val, -1, &signal_after);
        else if (strcmp(opt, "--producers") == 0)
            bad = parse_long(val, 1, &producers) || producers > MAX_PRODUCERS;
        else
            bad = 1;
        if (bad) {
            fprintf(stderr, "curfew-history: bad option %s %s\n", opt, val);
            usage(stderr);
            return 2;
        }
    }
    a.nproducers = (unsigned)producers;
    a.t_start = now_ms(CLOCK_MONOTONIC);

    /* Only the main thread takes SIGTERM and SIGINT: every thread started
     * from here on (the I/O threads too) inherits the blocked mask. */
    sigset_t sigs, old_mask;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, &old_mask);

    curfew_config cfg = {0};
    cfg.record_path = record;
    cfg.process_name = "curfew-history";
    cfg.on_event = on_event;
    cfg.event_arg = &a;
    curfew_io *io = NULL;
    if (check("curfew_create", curfew_create(&a.cf, &cfg)) < 0)
        return 1;
    curfew_io_options iopts = {.name = "history io"};
    if (check("curfew_io_create", curfew_io_create(a.cf, &iopts, &io)) < 0 ||
        check("curfew_queue_create",
              curfew_queue_create(io, "history db", &a.q)) < 0 ||
        check("posting the open", curfew_queue_post(a.q, open_db, &a.d)) < 0 ||
        check("adding the producers blocker",
              curfew_add_blocker(curfew_phase(a.cf, "stop-accepting"),
                                 "producers", stop_producers, &a, NULL)) < 0)
        return 1;

    printf("curfew-history: %s, %u producers, up to %ld inserts", a.d.path,
           a.nproducers, a.max_inserts);
    if (signal_after >= 0)
        printf(", SIGTERM after %ld ms", signal_after);
    printf("\n");
    fflush(stdout);

    atomic_store(&a.running, a.nproducers);
    for (unsigned i = 0; i < a.nproducers; i++) {
        producer_args[i].app = &a;
        producer_args[i].index = i;
        int rc = pthread_create(&a.producers[i], NULL, producer_main,
                                &producer_args[i]);
        if (rc != 0) {
            fprintf(stderr, "curfew-history: pthread_create: %s\n",
                    strerror(rc));
            /* The ones not started count as finished. */
            if (atomic_fetch_sub(&a.running, a.nproducers - i) ==
                a.nproducers - i)
                curfew_begin(a.cf);
            break;
        }
        a.started++;
    }

    static struct alarm al = {.mu = PTHREAD_MUTEX_INITIALIZER};
    pthread_t alarm_thread;
    int alarm_started = 0;
    if (signal_after >= 0) {
        /* The deadline is on CLOCK_MONOTONIC, and so must be the wait. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&al.cv, &ca);
        pthread_condattr_destroy(&ca);
        al.after_ms = signal_after;
        alarm_started =
            pthread_create(&alarm_thread, NULL, alarm_main, &al) == 0;
    }

    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    signal_cf = a.cf;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);

    /* Dispatches until a shutdown began (signal, or the last producer) and
     * every phase completed. */
    int run_rc = check("curfew_run", curfew_run(a.cf));

    if (alarm_started) {
        pthread_mutex_lock(&al.mu);
        al.cancel = 1;
        pthread_cond_signal(&al.cv);
        pthread_mutex_unlock(&al.mu);
        pthread_join(alarm_thread, NULL);
    }
    if (signal_after >= 0)
        pthread_cond_destroy(&al.cv);
    /* A signal from now on must not reach a coordinator being freed. */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    signal_cf = NULL;
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);

    int ok = run_rc == 0;
    if (!curfew_queue_is_closed(a.q)) {
        fprintf(stderr, "curfew-history: the shutdown completed, the queue "
                        "is not closed\n");
        ok = 0;
    }
    check("curfew_queue_free", curfew_queue_free(a.q));
    check("curfew_io_destroy", curfew_io_destroy(io));
    check("curfew_destroy", curfew_destroy(a.cf));

    printf("phases: %s\n", a.phases);
    if (a.d.closed)
        printf("sqlite3_close ran as the queue's close, after %ld inserts "
               "that were still queued\n",
               a.d.ran_after_close_queued);
    if (record)
        printf("shutdown record: %s\n", record);

    long accepted = atomic_load(&a.accepted);
    long rows = count_rows(a.d.path);
    long added = rows < 0 ? -1 : rows - a.d.rows_before;
    printf("inserted: %ld (accepted by curfew_queue_post; %ld refused with "
           "-ESHUTDOWN)\n",
           accepted, atomic_load(&a.refused));
    if (rows >= 0)
        printf("database: %ld rows (%ld before this run, %ld added)\n", rows,
               a.d.rows_before, added);
    else
        printf("database: unreadable\n");

    if (a.d.failed) {
        fprintf(stderr, "curfew-history: SQLite: %s\n", a.d.error);
        ok = 0;
    }
    if (atomic_load(&a.post_errors)) {
        fprintf(stderr, "curfew-history: %ld posts failed\n",
                atomic_load(&a.post_errors));
        ok = 0;
    }
    if (a.d.committed != accepted) {
        fprintf(stderr, "curfew-history: %ld inserts accepted, %ld committed\n",
                accepted, a.d.committed);
        ok = 0;
    }
    if (added != accepted) {
        fprintf(stderr,
                "curfew-history: MISMATCH: %ld inserts accepted, %ld rows "
                "added\n",
                accepted, added);
        ok = 0;
    }
    printf("%s\n",
           ok ? "OK: every accepted insert is in the database" : "FAILED");
    return ok ? 0 : 1;
}
