/* curfew-demo: downloads.json (I4) and the settings file prefs.js (I2).
 *
 * Downloads: the source documents' Downloads API waits 1.5 s after every
 * change before it saves the list, so a burst of progress updates costs
 * one write. If the browser quits inside that window, the last changes
 * must not be lost: the curfew_deferred is a blocker of its phase, and
 * finalizing it there runs the armed save at once instead of 1.5 s later.
 *
 * Prefs: small, written whole, and never half-written: curfew_write_atomic
 * writes a temporary file, fsyncs it, renames it over prefs.js and fsyncs
 * the directory, keeping the previous file as prefs.js.bak.
 *
 * SPDX-License-Identifier: MIT
 */
#include "services.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- downloads ---------------------------------------------------------- */

#define SAVE_DELAY_MS 1500 /* the Downloads API's delay */

static const struct download initial[DOWNLOADS] = {
    {"debian-12.9.0-amd64-netinst.iso", 661651456, 0, "downloading"},
    {"curfew-paper.pdf", 2411724, 0, "downloading"},
    {"holiday-photos.zip", 48234496, 0, "downloading"},
};

/* Called with d->mu held. */
static void render_locked(struct downloads *d, struct buf *out)
{
    buf_printf(out, "{\"change\":%llu,\"downloads\":[",
               (unsigned long long)d->change);
    for (int i = 0; i < DOWNLOADS; i++) {
        const struct download *x = &d->items[i];
        buf_printf(out, "%s{\"file\":", i ? "," : "");
        buf_json_str(out, x->file);
        buf_printf(out, ",\"size\":%lld,\"received\":%lld,\"state\":",
                   (long long)x->size, (long long)x->received);
        buf_json_str(out, x->state);
        buf_printf(out, "}");
    }
    buf_printf(out, "]}\n");
}

uint64_t downloads_changes(struct downloads *d)
{
    pthread_mutex_lock(&d->mu);
    uint64_t n = d->change;
    pthread_mutex_unlock(&d->mu);
    return n;
}

void downloads_render(struct downloads *d, struct buf *out, uint64_t *change)
{
    pthread_mutex_lock(&d->mu);
    render_locked(d, out);
    if (change)
        *change = d->change;
    pthread_mutex_unlock(&d->mu);
}

struct save {
    struct downloads *d;
    uint64_t change;
};

static void save_written(int result, void *arg)
{
    struct save *s = arg;
    struct downloads *d = s->d;
    if (result == 0) {
        /* Keep the newest change on disk, whatever order callbacks of
         * coalesced writes (I3) come in. */
        unsigned long long seen = atomic_load(&d->saved);
        while (seen < s->change &&
               !atomic_compare_exchange_weak(&d->saved, &seen, s->change))
            ;
    } else {
        atomic_fetch_add(&d->errors, 1);
    }
    free(s);
}

/* The deferred task, on an I/O thread: a snapshot of the list, written
 * atomically. Finalizing the task in its phase waits for this function;
 * the write it asks for is covered by the io's blocker of the same phase
 * (I1), so the phase ends only once downloads.json is on disk. */
static void save_downloads(curfew_deferred *task, void *arg)
{
    struct downloads *d = arg;
    (void)task;
    struct save *s = malloc(sizeof(*s));
    struct buf text = {0};
    if (s) {
        s->d = d;
        downloads_render(d, &text, &s->change);
    }
    if (!s || text.failed ||
        curfew_write_atomic(d->io, d->path, text.p, text.len, NULL,
                            save_written, s) != 0) {
        free(s);
        atomic_fetch_add(&d->errors, 1);
    }
    buf_free(&text);
}

int downloads_start(struct downloads *d, curfew *cf, const char *phase,
                    const char *path)
{
    pthread_mutex_init(&d->mu, NULL);
    memcpy(d->items, initial, sizeof(initial));
    d->path = strdup(path);
    if (!d->path)
        return -ENOMEM;
    curfew_io_options io = {.phase = phase, .name = "downloads I/O"};
    int r = curfew_io_create(cf, &io, &d->io);
    if (!r)
        r = curfew_deferred_create(d->io, "downloads.json (save soon)",
                                   SAVE_DELAY_MS, save_downloads, d, &d->task);
    return r;
}

static void changed(struct downloads *d)
{
    /* Several arms within 1.5 s give one save; an armed save is never
     * postponed by a later change. */
    if (curfew_deferred_arm(d->task) != 0)
        atomic_fetch_add(&d->errors, 1);
}

void downloads_step(struct downloads *d, uint32_t *rng)
{
    pthread_mutex_lock(&d->mu);
    struct download *x = &d->items[rng_next(rng) % DOWNLOADS];
    int moved = 0;
    if (strcmp(x->state, "downloading") == 0) {
        x->received += 262144 + (int64_t)(rng_next(rng) % (8u << 20));
        if (x->received >= x->size) {
            x->received = x->size;
            x->state = "complete";
        }
        d->change++;
        moved = 1;
    }
    pthread_mutex_unlock(&d->mu);
    if (moved)
        changed(d);
}

void downloads_pause_all(struct downloads *d)
{
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DOWNLOADS; i++)
        if (strcmp(d->items[i].state, "downloading") == 0)
            d->items[i].state = "paused";
    d->change++;
    pthread_mutex_unlock(&d->mu);
    changed(d);
}

void downloads_free(struct downloads *d)
{
    if (d->task && curfew_deferred_free(d->task) == 0)
        d->task = NULL;
    if (d->io && !d->task && curfew_io_destroy(d->io) == 0)
        d->io = NULL;
    free(d->path);
    d->path = NULL;
    pthread_mutex_destroy(&d->mu);
}

/* ---- prefs -------------------------------------------------------------- */

static void prefs_written(int result, void *arg)
{
    struct prefs *p = arg;
    if (result == 0)
        atomic_fetch_add(&p->written, 1);
    else
        atomic_fetch_add(&p->errors, 1);
}

int prefs_start(struct prefs *p, curfew *cf, const char *phase,
                const char *path, int tabs)
{
    p->tabs = tabs;
    p->zoom = 100;
    p->path = strdup(path);
    if (!p->path)
        return -ENOMEM;
    curfew_io_options io = {.phase = phase, .name = "prefs I/O"};
    return curfew_io_create(cf, &io, &p->io);
}

void prefs_save(struct prefs *p, const char *why)
{
    p->generation++;
    struct buf *t = &p->last;
    t->len = 0;
    buf_printf(t,
               "// prefs.js: written by curfew-demo with curfew_write_atomic"
               "\n// generation %u (%s)\n",
               p->generation, why);
    buf_printf(t, "user_pref(\"browser.startup.page\", 3);\n");
    buf_printf(t, "user_pref(\"browser.tabs.open\", %d);\n", p->tabs);
    buf_printf(t, "user_pref(\"browser.zoom.level\", %d);\n", p->zoom);
    buf_printf(t, "user_pref(\"demo.prefs.generation\", %u);\n", p->generation);
    curfew_write_options wo = {.mode = 0600, .backup = 1};
    /* A write still queued for prefs.js is replaced by this one (I3). */
    if (t->failed || curfew_write_atomic(p->io, p->path, t->p, t->len, &wo,
                                         prefs_written, p) != 0)
        atomic_fetch_add(&p->errors, 1);
}

void prefs_change(struct prefs *p, uint32_t *rng)
{
    static const int levels[] = {80, 90, 100, 110, 120, 133, 150};
    p->zoom = levels[rng_next(rng) % (sizeof(levels) / sizeof(levels[0]))];
    prefs_save(p, "zoom changed");
}

void prefs_free(struct prefs *p)
{
    if (p->io && curfew_io_destroy(p->io) == 0)
        p->io = NULL;
    free(p->path);
    p->path = NULL;
    buf_free(&p->last);
}
