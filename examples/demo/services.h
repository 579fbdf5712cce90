/* curfew-demo: the browser's services that keep data on disk.
 *
 *   places     the session history in SQLite, every operation through one
 *              curfew_queue, closed with sqlite3_close at its end (I5);
 *   downloads  downloads.json, saved by a curfew_deferred 1.5 s after a
 *              change, and at once when the shutdown finalizes it (I4);
 *   prefs      the settings file, prefs.js, written with
 *              curfew_write_atomic (I2).
 *
 * Each service has its own curfew_io, one blocker of the phase given to
 * its start function: profile-before-change, the last moment the profile
 * may be written.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_DEMO_SERVICES_H
#define CURFEW_DEMO_SERVICES_H

#include "demo.h"

#include <sqlite3.h>

/* ---- places.c ----------------------------------------------------------- */

struct places {
    char *path;
    curfew_io *io;
    curfew_queue *q;
    curfew_module *storage; /* counts the prepared statements (L3) */
    int hang;               /* --hang=io: the maintenance never returns */
    curfew_blocker closing; /* "places: close database", with a status */

    /* Only touched by the queue's operations, which run one at a time. */
    sqlite3 *db;
    sqlite3_stmt *insert;
    int in_txn;
    int64_t txn_started;
    long batch;  /* rows in the open transaction */
    long stored; /* rows committed */
    int failed;
    char error[256];

    atomic_long accepted; /* visits curfew_queue_post() took */
    atomic_long refused;  /* visits it refused (-ESHUTDOWN) */
    atomic_int closed;    /* sqlite3_close() returned SQLITE_OK */
};

/* Opens the database as the queue's first operation. Returns 0 or a
 * negative errno. Thread: main, before the shutdown. */
int places_start(struct places *p, curfew *cf, const char *phase,
                 const char *path, curfew_module *storage, int hang);
/* Stores a visit of tab to its page number page. Thread: any. */
void places_add_visit(struct places *p, int tab, uint32_t page);
/* At quit-application: the maintenance, then sqlite3_close, at the end of
 * the queue. Thread: any. */
void places_quit(struct places *p);
/* Rows in the visits table, read back from disk; -1 with err set. */
long places_rows_on_disk(const char *path, char *err, size_t errsize);
/* After the shutdown. */
void places_free(struct places *p);

/* ---- profile.c: downloads ----------------------------------------------- */

#define DOWNLOADS 3

struct download {
    const char *file;
    int64_t size, received;
    const char *state; /* "downloading", "paused" or "complete" */
};

struct downloads {
    char *path;
    curfew_io *io;
    curfew_deferred *task;
    pthread_mutex_t mu; /* items and change */
    struct download items[DOWNLOADS];
    uint64_t change;     /* changes so far */
    atomic_ullong saved; /* the newest change written to disk */
    atomic_int errors;
};

int downloads_start(struct downloads *d, curfew *cf, const char *phase,
                    const char *path);
/* One download makes progress (a change). Thread: any. */
void downloads_step(struct downloads *d, uint32_t *rng);
/* At quit: every running download is paused (a change). Thread: any. */
void downloads_pause_all(struct downloads *d);
/* Changes so far. Thread: any. */
uint64_t downloads_changes(struct downloads *d);
/* The JSON text of the current state, as downloads.json must hold it. */
void downloads_render(struct downloads *d, struct buf *out, uint64_t *change);
void downloads_free(struct downloads *d);

/* ---- profile.c: prefs --------------------------------------------------- */

struct prefs {
    char *path;
    curfew_io *io;
    /* The thread that saves (the activity thread) owns these; the main
     * thread reads them after joining it. */
    int tabs;
    int zoom;
    unsigned generation;
    struct buf last; /* the text of the newest write asked for */
    atomic_uint written;
    atomic_int errors;
};

int prefs_start(struct prefs *p, curfew *cf, const char *phase,
                const char *path, int tabs);
/* The user changed the zoom level: save now. */
void prefs_change(struct prefs *p, uint32_t *rng);
/* Writes the settings atomically (temporary file, fsync, rename, directory
 * fsync), keeping prefs.js.bak. */
void prefs_save(struct prefs *p, const char *why);
void prefs_free(struct prefs *p);

#endif /* CURFEW_DEMO_SERVICES_H */
