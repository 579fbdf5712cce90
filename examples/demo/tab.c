/* curfew-demo: a tab, one child process of the browser.
 *
 * The browser starts each tab with curfew_proc_spawn() (this same program,
 * with --tab N); the tab joins it with curfew_child_attach_opts(). While
 * the browser runs, it sends the tab batches of simulated input events;
 * the tab hands each batch to one of its two worker threads, which count
 * them.
 *
 * When the browser's profile-before-change phase sends Shutdown (P2), the
 * tab runs its own two phases:
 *
 *   content-child-will-shutdown
 *       the workers are cancelled; each finishes the events it was given,
 *       reports its count in on_killing, and only then is DEAD, which is
 *       when its blocker finishes (K4). The pages' unload handlers run.
 *   content-child-shutdown
 *       the tab sends its telemetry, every worker's count, to the browser
 *       (curfew_child_send). FinishShutdown follows when this phase ends,
 *       after the telemetry on the same channel (P3), and the tab exits at
 *       once (fast_exit: the release build's path).
 *
 * This is the order the first source document asks for: a process whose
 * workers were counted as done when they began cancelling sent its
 * telemetry before they had reported, and their counts were lost.
 *
 * Misbehaviour on request (one tab, chosen by the browser):
 *   crash        the second page's unload handler crashes the tab (abort);
 *   hang         the second page's unload handler never returns;
 *   hang-worker  a page script holds a strong reference on worker-2 and
 *                never lets go, so the worker never gets past CANCELING.
 * A hang is caught by the tab's own watchdog, within the budget the
 * browser passed with Shutdown (P7): it sends its hang report to the
 * browser (P6) and exits with status 70.
 *
 * SPDX-License-Identifier: MIT
 */
#include "demo.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct tab_worker {
    int index; /* 1-based, as in its name */
    char name[48];
    curfew_worker *w;
    /* Only the worker's own thread touches these. */
    uint64_t events, batches;
    /* What on_killing reported (K4), for the telemetry blocker. */
    atomic_ullong final_events, final_batches;
    atomic_int reported;
};

static struct tab {
    int index;
    char name[24];
    const char *misbehave;
    curfew *cf;
    struct tab_worker workers[DEMO_WORKERS];
    atomic_ullong refused; /* events no worker took */

    /* The unload handlers, a chain of steps on the timer thread. */
    curfew_blocker unload;
    int page, pages;
    int64_t page_started;

    curfew_worker_ref *script; /* hang-worker: held for ever */
} tab;

static int misbehaves(const char *how)
{
    return tab.misbehave && strcmp(tab.misbehave, how) == 0;
}

/* ---- the workers -------------------------------------------------------- */

/* A task: arg is the batch's event count itself (no allocation per
 * batch); the worker is found by its handle. */
static void count_events(curfew_worker *w, void *arg)
{
    for (int i = 0; i < DEMO_WORKERS; i++) {
        if (tab.workers[i].w == w) {
            tab.workers[i].events += (uintptr_t)arg;
            tab.workers[i].batches++;
        }
    }
}

/* K4: on the worker's thread, once, after every event it was given has
 * been counted. Its phase blocker finishes only after this returns. */
static void report_in(curfew_worker *w, void *arg)
{
    struct tab_worker *tw = arg;
    (void)w;
    atomic_store(&tw->final_events, tw->events);
    atomic_store(&tw->final_batches, tw->batches);
    atomic_store(&tw->reported, 1);
}

/* A message from the browser, on the tab's process thread. Every batch
 * sent before Shutdown arrives before it (the channel keeps the order), so
 * every one is posted before the workers are cancelled. */
static void on_browser_message(uint32_t type, const void *data, size_t len,
                               void *arg)
{
    const unsigned char *m = data;
    (void)arg;
    if (type != MSG_EVENTS || len != EVENTS_LEN)
        return; /* not ours: ignored */
    uint32_t batch = get_u32(m), count = get_u32(m + 4);
    struct tab_worker *tw = &tab.workers[batch % DEMO_WORKERS];
    /* BLOCK_SHUTDOWN: the task runs before the worker dies (K3). */
    if (curfew_worker_post(tw->w, CURFEW_TASK_BLOCK_SHUTDOWN, count_events,
                           (void *)(uintptr_t)count) != 0)
        atomic_fetch_add(&tab.refused, count);
}

/* --misbehave=hang-worker: a page script on worker-2 that never yields.
 * Its strong reference keeps the worker in CANCELING (K2); the worker's
 * status in the hang report names the reference and this call site (K5). */
static int start_endless_script(void)
{
    return curfew_worker_ref_strong(tab.workers[DEMO_WORKERS - 1].w,
                                    "page script (never yields)", &tab.script);
}

/* ---- the pages' unload handlers ----------------------------------------- */

/* How long page i's onbeforeunload takes: 40 to 100 ms, fixed per tab and
 * page, so a --serial run does the same work as a default one. */
static int64_t page_ms(int i)
{
    return 40 + 20 * ((tab.index + i) % 4);
}

static void unload_step(void *arg)
{
    (void)arg;
    int64_t ran = mono_ms() - tab.page_started;
    if (tab.page == 1 && misbehaves("hang")) {
        /* This handler never returns; the status is what the watchdog's
         * report will show. */
        curfew_blocker_status(tab.unload,
                              "page 2 of %d (https://example.org/tab-%d/"
                              "page-2): onbeforeunload has not returned after "
                              "%lld ms",
                              tab.pages, tab.index, (long long)ran);
        later(100, unload_step, NULL);
        return;
    }
    if (tab.page == 1 && misbehaves("crash")) {
        fprintf(stderr,
                "%s: crashing on purpose in page 2's unload handler "
                "(--crash-child)\n",
                tab.name);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* no core file for a demo */
        abort();
    }
    if (++tab.page == tab.pages) {
        curfew_blocker_status(tab.unload, "%d pages unloaded", tab.pages);
        curfew_blocker_done(tab.unload);
        return;
    }
    tab.page_started = mono_ms();
    curfew_blocker_status(tab.unload, "page %d of %d: onbeforeunload",
                          tab.page + 1, tab.pages);
    if (later(page_ms(tab.page), unload_step, NULL) != 0)
        curfew_blocker_fail(tab.unload, -EAGAIN, "timer thread full");
}

static int unload_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    tab.unload = self;
    tab.page = 0;
    tab.page_started = mono_ms();
    curfew_blocker_status(self, "page 1 of %d: onbeforeunload", tab.pages);
    int r = later(page_ms(0), unload_step, NULL);
    return r ? r : CURFEW_PENDING;
}

/* ---- telemetry ---------------------------------------------------------- */

/* content-child-shutdown: every worker is DEAD and has reported (K4), so
 * its count is final. FinishShutdown goes out after this message (P3). */
static int send_telemetry(curfew_blocker self, void *arg)
{
    (void)arg;
    unsigned char msg[TELEMETRY_LEN];
    uint64_t total = 0;
    put_u32(msg, (uint32_t)tab.index);
    put_u32(msg + 4, DEMO_WORKERS);
    put_u64(msg + 8, atomic_load(&tab.refused));
    for (int i = 0; i < DEMO_WORKERS; i++) {
        struct tab_worker *tw = &tab.workers[i];
        if (!atomic_load(&tw->reported)) {
            curfew_blocker_fail(self, -EPROTO, "a worker never reported");
            return CURFEW_PENDING; /* finished, as failed */
        }
        uint64_t events = atomic_load(&tw->final_events);
        put_u64(msg + 16 + 16 * i, events);
        put_u64(msg + 24 + 16 * i, atomic_load(&tw->final_batches));
        total += events;
    }
    int r = curfew_child_send(tab.cf, MSG_TELEMETRY, msg, sizeof(msg));
    if (r)
        return r; /* the blocker fails with it (B3) */
    curfew_blocker_status(self, "sent: %llu events from %d workers",
                          (unsigned long long)total, DEMO_WORKERS);
    return CURFEW_DONE;
}

/* content-child-shutdown: the workers are DEAD (K4), so their threads are
 * joined and freed here, before the fast exit: the tab ends with no thread
 * of theirs left half-way. */
static int join_workers(curfew_blocker self, void *arg)
{
    (void)arg;
    for (int i = 0; i < DEMO_WORKERS; i++) {
        int r = curfew_worker_free(tab.workers[i].w);
        if (r)
            return r;
        tab.workers[i].w = NULL;
    }
    curfew_blocker_status(self, "%d threads joined", DEMO_WORKERS);
    return CURFEW_DONE;
}

/* ---- the tab's life ----------------------------------------------------- */

int tab_main(const struct demo_options *opt)
{
    /* Ctrl-C on the terminal reaches the whole process group: the browser
     * decides when its tabs stop, as a browser does. */
    signal(SIGINT, SIG_IGN);

    tab.index = opt->tab;
    tab.misbehave = opt->misbehave;
    tab.pages = 2 + opt->tab % 3;
    snprintf(tab.name, sizeof(tab.name), "tab-%d", opt->tab);

    char file[64];
    snprintf(file, sizeof(file), "%s-record.json", tab.name);
    char *record = path_join(opt->out, file);
    snprintf(file, sizeof(file), "%s-hang.json", tab.name);
    char *report = path_join(opt->out, file);
    if (!record || !report) {
        fprintf(stderr, "%s: out of memory\n", tab.name);
        return 1;
    }

    static const curfew_phase_config phases[] = {
        {PH_TAB_WILL_SHUTDOWN, 0, 0},
        {PH_TAB_SHUTDOWN, 0, 0},
    };
    curfew_config cfg = {
        .phases = phases,
        .phase_count = 2,
        .process_name = tab.name,
        .record_path = record,
        .report_path = report,
        /* A hang ends the tab with status 70 after its report went to the
         * browser; never abort() and a core dump in a demo. */
        .on_timeout = CURFEW_TIMEOUT_EXIT,
    };
    int r = curfew_create(&tab.cf, &cfg);
    if (r) {
        fprintf(stderr, "%s: curfew_create: %s\n", tab.name,
                curfew_strerror(r));
        return 1;
    }
    r = later_start();

    for (int i = 0; i < DEMO_WORKERS && !r; i++) {
        struct tab_worker *tw = &tab.workers[i];
        tw->index = i + 1;
        snprintf(tw->name, sizeof(tw->name), "%s worker-%d", tab.name, i + 1);
        curfew_worker_config wc = {.name = tw->name,
                                   .cf = tab.cf,
                                   .phase = PH_TAB_WILL_SHUTDOWN,
                                   .on_killing = report_in,
                                   .arg = tw};
        r = curfew_worker_start(&wc, &tw->w);
    }
    if (!r)
        r = curfew_add_blocker(curfew_phase(tab.cf, PH_TAB_WILL_SHUTDOWN),
                               "unload documents", unload_trigger, NULL, NULL);
    if (!r)
        r = curfew_add_blocker(curfew_phase(tab.cf, PH_TAB_SHUTDOWN),
                               "send telemetry", send_telemetry, NULL, NULL);
    if (!r)
        r = curfew_add_blocker(curfew_phase(tab.cf, PH_TAB_SHUTDOWN),
                               "join worker threads", join_workers, NULL, NULL);
    if (!r && misbehaves("hang-worker"))
        r = start_endless_script();
    if (!r) {
        curfew_child_options co = {
            .finish_after = PH_TAB_SHUTDOWN,
            .fast_exit = 1,
            .exit_code = 0,
            /* If the browser dies, shut down alone within 2 s (P8). */
            .orphan_budget_ms = 2000,
            .orphan_exit_code = 3,
            .on_message = on_browser_message,
        };
        r = curfew_child_attach_opts(tab.cf, &co);
    }
    if (r) {
        fprintf(stderr, "%s: cannot start: %s\n", tab.name, curfew_strerror(r));
        return 1;
    }

    /* Blocks until the browser's Shutdown has begun the shutdown and the
     * phases ran; with fast_exit the process ends right after
     * FinishShutdown, inside this call. */
    curfew_run(tab.cf);

    /* Reached only without fast_exit: the full teardown. */
    if (tab.script)
        curfew_worker_ref_release(tab.script);
    for (int i = 0; i < DEMO_WORKERS; i++)
        if (tab.workers[i].w)
            curfew_worker_free(tab.workers[i].w);
    later_stop();
    curfew_destroy(tab.cf);
    free(record);
    free(report);
    return 0;
}
