/* curfew-demo: the session history ("places"), in SQLite (I5).
 *
 * The source documents' case: a service keeps a queue of database
 * operations, some of them several statements long. If the storage layer
 * closed the database on its own at shutdown, it could cut one of them in
 * half. So every operation goes through one curfew_queue, which runs them
 * one at a time, in order, on the I/O threads; at quit-application the
 * service puts sqlite3_close at the end of that queue, and the queue's
 * blocker holds profile-before-change until the close has run.
 *
 * SPDX-License-Identifier: MIT
 */
#include "services.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Commit at most this often: a transaction per visit would cost an fsync
 * each. What is not committed yet is committed by the close. */
#define COMMIT_EVERY_MS 250

struct visit {
    struct places *p;
    int tab;
    uint32_t page;
    int64_t when_ms;
};

/* Remembers the first failure; the operations after it do nothing, and
 * the verification then finds rows missing. */
static void fail(struct places *p, const char *what)
{
    if (!p->failed) {
        p->failed = 1;
        snprintf(p->error, sizeof(p->error), "%s: %s", what,
                 p->db ? sqlite3_errmsg(p->db) : "out of memory");
        curfew_blocker_status(p->closing, "failed: %s", p->error);
    }
}

static void commit(struct places *p)
{
    if (!p->in_txn)
        return;
    p->in_txn = 0;
    if (sqlite3_exec(p->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail(p, "COMMIT");
        return;
    }
    p->stored += p->batch;
    p->batch = 0;
    curfew_blocker_status(p->closing, "open, %ld visits stored", p->stored);
}

/* ---- the queue's operations (on an I/O thread, one at a time) ----------- */

static void op_open(void *arg)
{
    struct places *p = arg;
    int rc = sqlite3_open_v2(p->path, &p->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        fail(p, "open");
        return;
    }
    /* synchronous=FULL: a committed transaction is on disk. */
    if (sqlite3_exec(p->db,
                     "PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS visits("
                     " id INTEGER PRIMARY KEY, tab INTEGER NOT NULL,"
                     " url TEXT NOT NULL, visited_ms INTEGER NOT NULL)",
                     NULL, NULL, NULL) != SQLITE_OK) {
        fail(p, "create table");
        return;
    }
    if (sqlite3_prepare_v2(p->db,
                           "INSERT INTO visits(tab, url, visited_ms)"
                           " VALUES(?1, ?2, ?3)",
                           -1, &p->insert, NULL) != SQLITE_OK) {
        fail(p, "prepare");
        return;
    }
    /* A dynamic object of the storage module: it must be gone (finalized)
     * before the end of xpcom-shutdown, or it is reported as a leak. */
    curfew_live_acquire(p->storage, "Statement");
    curfew_blocker_status(p->closing, "open");
}

static void op_insert(void *arg)
{
    struct visit *v = arg;
    struct places *p = v->p;
    if (!p->failed) {
        if (!p->in_txn) {
            if (sqlite3_exec(p->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
                fail(p, "BEGIN");
            p->in_txn = !p->failed;
            p->txn_started = mono_ms();
        }
        char url[96];
        snprintf(url, sizeof(url), "https://example.org/tab-%d/page-%u", v->tab,
                 v->page);
        sqlite3_bind_int(p->insert, 1, v->tab);
        sqlite3_bind_text(p->insert, 2, url, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(p->insert, 3, v->when_ms);
        if (!p->failed && sqlite3_step(p->insert) != SQLITE_DONE)
            fail(p, "INSERT");
        else if (!p->failed)
            p->batch++;
        sqlite3_reset(p->insert);
        if (!p->failed && mono_ms() - p->txn_started >= COMMIT_EVERY_MS)
            commit(p);
    }
    free(v);
}

/* Routine maintenance at quit. With --hang=io it "never returns", like a
 * statement stuck on a lock: the queue cannot reach the close, and the
 * watchdog has to say so. */
static void op_maintenance(void *arg)
{
    struct places *p = arg;
    commit(p);
    if (p->hang) {
        int64_t t0 = mono_ms();
        for (;;) {
            /* The status is what the hang report will show. */
            curfew_blocker_status(p->closing,
                                  "maintenance (PRAGMA optimize) has not "
                                  "returned after %.1f s; the close waits "
                                  "behind it",
                                  (double)(mono_ms() - t0) / 1000.0);
            sleep_ms(100);
        }
    }
    curfew_blocker_status(p->closing, "maintenance (PRAGMA optimize)");
    if (!p->failed &&
        sqlite3_exec(p->db, "PRAGMA optimize", NULL, NULL, NULL) != SQLITE_OK)
        fail(p, "PRAGMA optimize");
}

/* The queue's last operation: everything posted before it has run. */
static void op_close(void *arg)
{
    struct places *p = arg;
    if (!p->failed)
        commit(p);
    if (p->insert) {
        sqlite3_finalize(p->insert);
        p->insert = NULL;
        curfew_live_release(p->storage, "Statement");
    }
    if (p->db) {
        if (sqlite3_close(p->db) == SQLITE_OK)
            atomic_store(&p->closed, 1);
        else
            fail(p, "close");
        p->db = NULL;
    }
    if (p->failed) {
        curfew_blocker_fail(p->closing, -EIO, p->error);
    } else {
        curfew_blocker_status(p->closing, "closed, %ld visits stored",
                              p->stored);
        curfew_blocker_done(p->closing);
    }
}

/* ---- the service's interface -------------------------------------------- */

int places_start(struct places *p, curfew *cf, const char *phase,
                 const char *path, curfew_module *storage, int hang)
{
    p->storage = storage;
    p->hang = hang;
    p->path = strdup(path);
    if (!p->path)
        return -ENOMEM;
    curfew_io_options io = {.phase = phase, .name = "places I/O"};
    int r = curfew_io_create(cf, &io, &p->io);
    if (!r)
        r = curfew_queue_create(p->io, "places.sqlite queue", &p->q);
    /* The service's own blocker, next to the queue's: it says what the
     * database is doing, so a hang report tells more than "the queue". */
    if (!r)
        r = curfew_add_blocker(curfew_phase(cf, phase),
                               "places: close database", NULL, NULL,
                               &p->closing);
    if (!r)
        r = curfew_queue_post(p->q, op_open, p);
    return r;
}

void places_add_visit(struct places *p, int tab, uint32_t page)
{
    struct visit *v = malloc(sizeof(*v));
    if (!v) {
        atomic_fetch_add(&p->refused, 1);
        return;
    }
    *v = (struct visit){p, tab, page, mono_ms()};
    if (curfew_queue_post(p->q, op_insert, v) == 0) {
        atomic_fetch_add(&p->accepted, 1);
    } else {
        /* -ESHUTDOWN once the close is queued: refused, never lost. */
        atomic_fetch_add(&p->refused, 1);
        free(v);
    }
}

void places_quit(struct places *p)
{
    if (curfew_queue_post(p->q, op_maintenance, p) != 0)
        fprintf(stderr, "curfew-demo: places maintenance not queued\n");
    int r = curfew_queue_close(p->q, op_close, p);
    if (r)
        fprintf(stderr, "curfew-demo: places close not queued: %s\n",
                curfew_strerror(r));
}

static int count_row(void *arg, int n, char **values, char **names)
{
    (void)names;
    if (n == 1 && values[0])
        *(long *)arg = strtol(values[0], NULL, 10);
    return 0;
}

long places_rows_on_disk(const char *path, char *err, size_t errsize)
{
    sqlite3 *db = NULL;
    long rows = -1;
    char *msg = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errsize, "%s", db ? sqlite3_errmsg(db) : "no memory");
    } else if (sqlite3_exec(db, "SELECT count(*) FROM visits", count_row, &rows,
                            &msg) != SQLITE_OK) {
        snprintf(err, errsize, "%s", msg ? msg : "query failed");
        rows = -1;
    }
    sqlite3_free(msg);
    sqlite3_close(db);
    return rows;
}

void places_free(struct places *p)
{
    if (p->q && curfew_queue_free(p->q) == 0)
        p->q = NULL;
    if (p->io && !p->q && curfew_io_destroy(p->io) == 0)
        p->io = NULL;
    free(p->path);
    p->path = NULL;
}
