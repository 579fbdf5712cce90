/* curfew-demo: the browser, the parent process.
 *
 * While it "browses" (--seconds), one activity thread plays the user and
 * the web: it sends every tab batches of input events, loads pages (each
 * finished load is a visit stored in the history), moves downloads along
 * (each change arms the 1.5 s save of downloads.json) and now and then
 * changes the zoom (prefs.js is saved). Then it quits, as a user would;
 * SIGINT or SIGTERM quit earlier.
 *
 * The shutdown runs the browser's phases, in the browser's order:
 *
 *   quit-application         the activity stops: loads are cancelled,
 *                            downloads paused (a change: the save is
 *                            armed), prefs saved, and the history's close
 *                            is put at the end of its queue
 *   profile-change-net-teardown, profile-change-teardown
 *                            small simulated jobs
 *   profile-before-change    the last moment the profile may be written:
 *                            every tab gets Shutdown at once and is one
 *                            blocker (P2); the history queue, the
 *                            downloads save and the prefs writes are each
 *                            a blocker, all in parallel
 *   profile-before-change-telemetry
 *                            every tab's telemetry has arrived (P3):
 *                            telemetry.json is written
 *   xpcom-will-shutdown      wait for the tab processes to be gone
 *   xpcom-shutdown           the dynamic phase: short-lived objects must
 *                            be gone by its end, or they are leaks (L3)
 *   xpcom-shutdown-threads   the static phase: the long-lived modules shut
 *                            down in reverse dependency order (L2)
 *
 * With --serial, profile-before-change is cut in one phase per tab and
 * per service, run one after another: the old way, where each part spun
 * its own wait.
 *
 * Afterwards it prints the timeline and checks, against the files on
 * disk, that nothing was lost.
 *
 * SPDX-License-Identifier: MIT
 */
#include "services.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PHASES (8 + DEMO_MAX_TABS + 3)

/* How long a tab may take to shut down before it is killed (P4); also the
 * budget it gets with Shutdown (P7), so its own watchdog acts first. */
#define HANG_KILL_AFTER_MS 1500
/* The browser's own watchdog in the --hang modes. */
#define HANG_WARN_MS 800
#define HANG_CRASH_MS 2000

/* The browser's view of a tab. */
struct tab {
    int index;
    char name[16];
    const char *misbehave;
    curfew_proc *proc;
    pid_t pid;

    /* The activity thread's; read by the main thread once it joined it. */
    uint32_t batches;
    uint64_t sent[DEMO_WORKERS];
    int loading;
    uint32_t page;
    int64_t next_ms;

    /* From the process thread, under B.mu. */
    int reported;
    uint64_t events[DEMO_WORKERS], counted_batches[DEMO_WORKERS], refused;
    int bad_messages;
    int exited, status;
};

/* A blocker that stands for simulated work of a few milliseconds. */
struct sim {
    const char *status;
    int64_t ms;
    curfew_blocker self;
};

static struct browser {
    struct demo_options opt;
    char *dir;
    char *record_path, *report_path, *trace_path, *svg_path;
    char *places_path, *downloads_path, *prefs_path, *telemetry_path;
    const char *tool;
    int tty;

    curfew *cf;
    char phase_names[MAX_PHASES][64];
    unsigned nphases;

    pthread_mutex_t mu; /* the tabs' process-thread fields, reaping */
    struct tab tabs[DEMO_MAX_TABS];
    int ntabs;
    curfew_blocker reap_blocker;
    int reap_waiting;

    curfew_module *m_ipc, *m_necko, *m_storage;
    struct places places;
    struct downloads downloads;
    struct prefs prefs;
    curfew_io *telemetry_io;
    curfew_blocker telemetry_blocker;

    pthread_t activity;
    int activity_started;
    atomic_int stop;
    curfew_blocker quit_blocker;
    atomic_ullong events_sent;

    pthread_mutex_t out_mu; /* one writer on standard output at a time */
    pthread_t progress;
    int progress_started;
    atomic_int progress_stop;

    int64_t started_ms;
    atomic_llong begun_ms; /* when curfew_begin() was called, or 0 */
    atomic_llong shutdown_ms;
} B = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .out_mu = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- output ------------------------------------------------------------- */

/* A line above the live progress line (which the next refresh redraws). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&B.out_mu);
    if (B.tty)
        fputs("\r\033[K", stdout);
    vprintf(fmt, ap);
    fflush(stdout);
    pthread_mutex_unlock(&B.out_mu);
    va_end(ap);
}

static int terminal_width(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* The live line: what the browser is doing, and once the shutdown began,
 * the phase and what it still waits for (curfew_pending_summary); a tab's
 * blocker carries the tab's own pending blockers as its status (P5). */
static void *progress_main(void *arg)
{
    (void)arg;
    char line[1024], pending[768];
    while (!atomic_load(&B.progress_stop)) {
        const char *phase = curfew_current_phase(B.cf);
        if (!phase) {
            snprintf(line, sizeof(line),
                     "browsing %.1f/%.1f s  events %llu  visits %ld  "
                     "downloads #%llu (saved #%llu)  Ctrl-C quits",
                     (double)(mono_ms() - B.started_ms) / 1000.0,
                     (double)B.opt.run_ms / 1000.0,
                     (unsigned long long)atomic_load(&B.events_sent),
                     atomic_load(&B.places.accepted),
                     (unsigned long long)downloads_changes(&B.downloads),
                     (unsigned long long)atomic_load(&B.downloads.saved));
        } else {
            long long begun = atomic_load(&B.begun_ms);
            curfew_pending_summary(B.cf, pending, sizeof(pending));
            snprintf(line, sizeof(line), "shutdown %.2f s: %s",
                     begun ? (double)(mono_ms() - begun) / 1000.0 : 0.0,
                     pending[0] ? pending : phase);
        }
        /* One terminal line, cut on a UTF-8 boundary. */
        size_t max = (size_t)terminal_width() - 1;
        if (strlen(line) > max) {
            size_t n = max;
            while (n > 0 && ((unsigned char)line[n] & 0xC0) == 0x80)
                n--;
            line[n] = '\0';
        }
        pthread_mutex_lock(&B.out_mu);
        printf("\r%s\033[K", line);
        fflush(stdout);
        pthread_mutex_unlock(&B.out_mu);
        sleep_ms(100);
    }
    pthread_mutex_lock(&B.out_mu);
    fputs("\r\033[K", stdout);
    fflush(stdout);
    pthread_mutex_unlock(&B.out_mu);
    return NULL;
}

/* From the main thread, or the watchdog's (a hang): whichever comes first
 * joins. */
static void progress_stop(void)
{
    if (B.progress_started && atomic_exchange(&B.progress_stop, 1) == 0)
        pthread_join(B.progress, NULL);
}

/* ---- the tabs ----------------------------------------------------------- */

/* A message from a tab, on curfew's process thread. It comes from another
 * process: checked, never trusted. */
static void on_tab_message(curfew_proc *p, uint32_t type, const void *data,
                           size_t len, void *arg)
{
    struct tab *t = arg;
    const unsigned char *m = data;
    (void)p;
    pthread_mutex_lock(&B.mu);
    if (type == MSG_TELEMETRY && len == TELEMETRY_LEN && !t->reported &&
        get_u32(m) == (uint32_t)t->index && get_u32(m + 4) == DEMO_WORKERS) {
        t->reported = 1;
        t->refused = get_u64(m + 8);
        for (int i = 0; i < DEMO_WORKERS; i++) {
            t->events[i] = get_u64(m + 16 + 16 * i);
            t->counted_batches[i] = get_u64(m + 24 + 16 * i);
        }
    } else {
        t->bad_messages++;
    }
    pthread_mutex_unlock(&B.mu);
}

/* With B.mu held. */
static int tabs_running_locked(void)
{
    int n = 0;
    for (int i = 0; i < B.ntabs; i++)
        n += !B.tabs[i].exited;
    return n;
}

/* A tab was reaped, on the process thread. */
static void on_tab_exit(curfew_proc *p, int status, void *arg)
{
    struct tab *t = arg;
    (void)p;
    /* Its ContentParent, a short-lived object of the ipc module, is gone:
     * counted before the reaping blocker below can let the shutdown go
     * on to the leak check (L3). */
    curfew_live_release(B.m_ipc, "ContentParent");
    pthread_mutex_lock(&B.mu);
    t->exited = 1;
    t->status = status;
    int running = tabs_running_locked();
    if (B.reap_waiting && running == 0) {
        B.reap_waiting = 0;
        curfew_blocker_done(B.reap_blocker);
    } else if (B.reap_waiting) {
        curfew_blocker_status(B.reap_blocker, "%d tab process%s running",
                              running, running == 1 ? "" : "es");
    }
    pthread_mutex_unlock(&B.mu);
}

/* xpcom-will-shutdown: every tab finished its shutdown in
 * profile-before-change; now its process must be gone too. */
static int reap_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&B.mu);
    int running = tabs_running_locked();
    if (running) {
        B.reap_blocker = self;
        B.reap_waiting = 1;
        curfew_blocker_status(self, "%d tab process%s running", running,
                              running == 1 ? "" : "es");
    }
    pthread_mutex_unlock(&B.mu);
    return running ? CURFEW_PENDING : CURFEW_DONE;
}

static int spawn_tab(struct tab *t, const char *phase)
{
    char num[16], misbehave[48];
    char *argv[8];
    int n = 0;
    snprintf(num, sizeof(num), "%d", t->index);
    argv[n++] = (char *)B.opt.self;
    argv[n++] = "--tab";
    argv[n++] = num;
    argv[n++] = "--out";
    argv[n++] = B.dir;
    if (t->misbehave) {
        snprintf(misbehave, sizeof(misbehave), "--misbehave=%s", t->misbehave);
        argv[n++] = misbehave;
    }
    argv[n] = NULL;
    curfew_proc_options po = {
        .name = t->name,
        .shutdown_phase = phase,
        .kill_after_ms = B.opt.hang ? HANG_KILL_AFTER_MS : 0,
        .on_message = on_tab_message,
        .on_exit = on_tab_exit,
        .arg = t,
    };
    /* Counted first: the tab may exit before spawn returns. */
    curfew_live_acquire(B.m_ipc, "ContentParent");
    int r = curfew_proc_spawn(B.cf, argv, &po, &t->proc);
    if (r) {
        curfew_live_release(B.m_ipc, "ContentParent");
        return r;
    }
    t->pid = curfew_proc_pid(t->proc);
    return 0;
}

/* ---- browsing (the activity thread) ------------------------------------- */

static void send_events(struct tab *t, uint32_t *rng)
{
    unsigned char msg[EVENTS_LEN];
    uint32_t count = 1 + rng_next(rng) % 64;
    put_u32(msg, t->batches);
    put_u32(msg + 4, count);
    /* Counted only if the channel took it (-EPIPE once the tab is gone):
     * then the tab's worker number batch % DEMO_WORKERS must count it. */
    if (curfew_proc_send(t->proc, MSG_EVENTS, msg, sizeof(msg)) == 0) {
        t->sent[t->batches % DEMO_WORKERS] += count;
        t->batches++;
        atomic_fetch_add(&B.events_sent, count);
    }
}

static void browse(struct tab *t, int64_t now, uint32_t *rng)
{
    if (now < t->next_ms)
        return;
    if (!t->loading) {
        /* A page load starts. Its channel is a short-lived object of the
         * network module (L3). */
        curfew_live_acquire(B.m_necko, "HttpChannel");
        t->loading = 1;
        t->page++;
        t->next_ms = now + 10 + rng_next(rng) % 50;
    } else {
        /* Loaded: a visit for the history. */
        curfew_live_release(B.m_necko, "HttpChannel");
        t->loading = 0;
        places_add_visit(&B.places, t->index, t->page);
        t->next_ms = now + 5 + rng_next(rng) % 30;
    }
}

/* What quitting does before the profile goes away: every service is told
 * now, and each finishes on its own time within profile-before-change. */
static void quit_browsing(void)
{
    for (int i = 0; i < B.ntabs; i++) {
        if (B.tabs[i].loading) {
            B.tabs[i].loading = 0; /* cancelled: not a visit */
            curfew_live_release(B.m_necko, "HttpChannel");
        }
    }
    downloads_pause_all(&B.downloads); /* a change: the save is armed */
    prefs_save(&B.prefs, "saved at quit");
    places_quit(&B.places); /* the close goes at the end of its queue */
}

static void *activity_main(void *arg)
{
    (void)arg;
    uint32_t rng = 0x2545f491u;
    int64_t start = mono_ms(), next_download = start, next_zoom = start + 700;
    int quit = 0;
    while (!atomic_load(&B.stop)) {
        int64_t now = mono_ms();
        for (int i = 0; i < B.ntabs; i++) {
            send_events(&B.tabs[i], &rng);
            browse(&B.tabs[i], now, &rng);
        }
        if (now >= next_download) {
            downloads_step(&B.downloads, &rng);
            next_download = now + 60 + rng_next(&rng) % 120;
        }
        if (now >= next_zoom) {
            prefs_change(&B.prefs, &rng);
            next_zoom = now + 600 + rng_next(&rng) % 600;
        }
        if (!quit && now - start >= B.opt.run_ms) {
            /* The user quits. Browsing goes on until quit-application
             * tells this thread to stop. */
            quit = 1;
            atomic_store(&B.begun_ms, mono_ms());
            curfew_begin(B.cf);
        }
        sleep_ms(5);
    }
    quit_browsing();
    curfew_blocker_status(B.quit_blocker,
                          "stopped: loads cancelled, downloads paused, prefs "
                          "saved, history close queued");
    curfew_blocker_done(B.quit_blocker);
    return NULL;
}

/* quit-application. */
static int quit_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    B.quit_blocker = self;
    curfew_blocker_status(self, "stopping the activity");
    atomic_store(&B.stop, 1); /* publishes quit_blocker to the thread */
    return CURFEW_PENDING;
}

/* ---- telemetry ---------------------------------------------------------- */

static void telemetry_written(int result, void *arg)
{
    (void)arg;
    if (result == 0) {
        curfew_blocker_status(B.telemetry_blocker, "on disk");
        curfew_blocker_done(B.telemetry_blocker);
    } else {
        curfew_blocker_fail(B.telemetry_blocker, result,
                            "writing telemetry.json");
    }
}

/* profile-before-change-telemetry: every tab finished in the phase before,
 * so every telemetry message a tab sent has arrived (P3). */
static int telemetry_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    struct buf j = {0};
    uint64_t total = 0;
    int reported = 0;
    buf_printf(&j, "{\"process\":\"browser\",\"pid\":%ld,\"tabs\":[",
               (long)getpid());
    pthread_mutex_lock(&B.mu);
    for (int i = 0; i < B.ntabs; i++) {
        struct tab *t = &B.tabs[i];
        buf_printf(&j, "%s{\"tab\":%d,\"name\":", i ? "," : "", t->index);
        buf_json_str(&j, t->name);
        buf_printf(&j, ",\"pid\":%ld,", (long)t->pid);
        if (t->reported) {
            uint64_t sum = 0;
            for (int w = 0; w < DEMO_WORKERS; w++)
                sum += t->events[w];
            buf_printf(&j,
                       "\"outcome\":\"reported\",\"events\":%llu,"
                       "\"refused\":%llu,\"workers\":[",
                       (unsigned long long)sum, (unsigned long long)t->refused);
            for (int w = 0; w < DEMO_WORKERS; w++)
                buf_printf(&j,
                           "%s{\"worker\":%d,\"events\":%llu,"
                           "\"batches\":%llu}",
                           w ? "," : "", w + 1,
                           (unsigned long long)t->events[w],
                           (unsigned long long)t->counted_batches[w]);
            buf_printf(&j, "]}");
            total += sum;
            reported++;
        } else {
            char why[128] = "no telemetry";
            if (t->exited) {
                char how[80];
                describe_status(t->status, how, sizeof(how));
                snprintf(why, sizeof(why), "no telemetry: %s", how);
            }
            buf_printf(&j, "\"outcome\":");
            buf_json_str(&j, why);
            buf_printf(&j, ",\"workers\":[]}");
        }
    }
    pthread_mutex_unlock(&B.mu);
    buf_printf(&j, "],\"events\":%llu}\n", (unsigned long long)total);

    B.telemetry_blocker = self;
    curfew_blocker_status(self, "writing: %d of %d tabs reported, %llu events",
                          reported, B.ntabs, (unsigned long long)total);
    int r = j.failed
                ? -ENOMEM
                : curfew_write_atomic(B.telemetry_io, B.telemetry_path, j.p,
                                      j.len, NULL, telemetry_written, NULL);
    buf_free(&j);
    return r ? r : CURFEW_PENDING;
}

/* ---- simulated jobs and the long-lived modules -------------------------- */

static void sim_done(void *arg)
{
    struct sim *s = arg;
    curfew_blocker_done(s->self);
}

static int sim_trigger(curfew_blocker self, void *arg)
{
    struct sim *s = arg;
    s->self = self;
    curfew_blocker_status(self, "%s", s->status);
    int r = later(s->ms, sim_done, s);
    return r ? r : CURFEW_PENDING;
}

static struct sim net_teardown = {"closing idle connections", 20, {0}};
static struct sim addons = {"shutting add-ons down", 12, {0}};
static struct sim observers = {"releasing observers", 6, {0}};

/* Joins the browser's own threads: the last module to go. */
static void stop_threads(void)
{
    if (B.activity_started) {
        pthread_join(B.activity, NULL);
        B.activity_started = 0;
    }
    later_stop();
}

static void free_tab_handles(void)
{
    for (int i = 0; i < B.ntabs; i++)
        if (B.tabs[i].proc && curfew_proc_free(B.tabs[i].proc) == 0)
            B.tabs[i].proc = NULL;
}

/* A long-lived service ("static object"): shut down in
 * xpcom-shutdown-threads after every module that uses it (L2). Its
 * teardown takes ms milliseconds, on the timer thread. */
struct module_def {
    const char *name;
    const char *const *deps;
    unsigned ndeps;
    int64_t ms;
    void (*teardown)(void);
    curfew_module **out;
};

static const char *const uses_threads[] = {"thread-manager"};
static const char *const places_uses[] = {"storage", "necko"};
static const char *const telemetry_uses[] = {"ipc"};

static const struct module_def modules[] = {
    {"thread-manager", NULL, 0, 0, stop_threads, NULL},
    {"ipc", uses_threads, 1, 10, free_tab_handles, &B.m_ipc},
    {"necko", uses_threads, 1, 25, NULL, &B.m_necko},
    {"storage", uses_threads, 1, 15, NULL, &B.m_storage},
    {"places", places_uses, 2, 5, NULL, NULL},
    {"telemetry", telemetry_uses, 1, 5, NULL, NULL},
};

static void module_finished(void *arg)
{
    curfew_module_done(arg, 0);
}

static int module_shutdown(curfew_module *m, void *arg)
{
    const struct module_def *d = arg;
    if (d->teardown)
        d->teardown();
    if (d->ms <= 0 || later(d->ms, module_finished, m) != 0)
        return CURFEW_DONE;
    return CURFEW_PENDING;
}

static int register_modules(void)
{
    static const curfew_module_ops ops = {module_shutdown};
    for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
        const struct module_def *d = &modules[i];
        curfew_module *m;
        int r = curfew_module_register(B.cf, d->name, d->deps, d->ndeps, &ops,
                                       (void *)d, &m);
        if (r)
            return r;
        if (d->out)
            *d->out = m;
    }
    return 0;
}

/* ---- events and the watchdog -------------------------------------------- */

static void show_outputs(void);

/* CURFEW_EV_HANG, on the watchdog thread, after the hang report and the
 * record were written, before the process exits (on_timeout EXIT): the
 * last chance to show what hung. */
static void on_hang(const curfew_event *ev)
{
    progress_stop();
    pthread_mutex_lock(&B.out_mu);
    printf("\nThe browser's watchdog fired: barrier %s waited %lld ms.\n\n",
           ev->barrier ? ev->barrier : "?", (long long)ev->duration_ms);
    char *json;
    size_t len;
    if (read_file(ev->text ? ev->text : B.report_path, &json, &len) == 0) {
        print_hang_report(json, "browser");
        free(json);
    } else {
        printf("  (the report went to standard error only)\n");
    }
    show_outputs();
    printf("\nexit status %d: the watchdog ends the browser "
           "(on_timeout = CURFEW_TIMEOUT_EXIT).\n",
           DEMO_EXIT_HANG);
    fflush(stdout);
    /* out_mu stays locked: the process ends when this returns. */
}

static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    switch (ev->type) {
    case CURFEW_EV_BEGIN: {
        /* The activity thread notes when the user quits; anything else
         * that began the shutdown was a signal. */
        long long zero = 0, now = mono_ms();
        int signalled = atomic_compare_exchange_strong(&B.begun_ms, &zero, now);
        if (!B.tty)
            say("shutdown began after %.1f s (%s)\n",
                (double)(now - B.started_ms) / 1000.0,
                signalled ? "a signal" : "the user quit");
        break;
    }
    case CURFEW_EV_PHASE_END:
        if (!B.tty)
            say("  %-40s %6lld ms\n", ev->phase, (long long)ev->duration_ms);
        break;
    case CURFEW_EV_BLOCKER_FAILED:
        say("  in %s: \"%s\" failed: %s (%s)\n",
            ev->phase ? ev->phase : ev->barrier, ev->blocker,
            ev->text ? ev->text : "", curfew_strerror(ev->error));
        break;
    case CURFEW_EV_NOTICE:
        say("  note: %s\n", ev->text ? ev->text : "");
        break;
    case CURFEW_EV_HANG:
        on_hang(ev);
        break;
    case CURFEW_EV_COMPLETE:
        atomic_store(&B.shutdown_ms, ev->duration_ms);
        break;
    default:
        break; /* warnings: the watchdog wrote its own line to stderr */
    }
}

/* ---- signals ------------------------------------------------------------ */

/* curfew_signals_install() (S1) when this curfew has it, which also makes a
 * second Ctrl-C exit after writing the record; otherwise a plain handler
 * that does the same, without the record. */

#ifndef CURFEW_SIGNALS_DEFAULT
static volatile sig_atomic_t interrupts;

static void on_signal(int sig)
{
    if (sig == SIGINT && interrupts++) {
        static const char msg[] = "\ncurfew-demo: second Ctrl-C: exiting\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(130);
    }
    curfew_begin_from_signal(B.cf);
}
#endif

/* SIGINT and SIGTERM begin the shutdown early; a second Ctrl-C exits. */
static int install_signals(void)
{
#ifdef CURFEW_SIGNALS_DEFAULT
    return curfew_signals_install(B.cf, CURFEW_SIGNALS_DEFAULT);
#else
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL))
        return -errno;
    return 0;
#endif
}

static void uninstall_signals(void)
{
#ifdef CURFEW_SIGNALS_DEFAULT
    curfew_signals_uninstall(B.cf);
#else
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
#endif
}

/* ---- what the shutdown left behind -------------------------------------- */

static void file_row(const char *name, const char *what)
{
    printf("  %-22s %s\n", name, what);
}

/* The timeline, the Chrome trace and the SVG picture of the record, and
 * the list of files. Also used at a hang, from the watchdog thread. */
static void show_outputs(void)
{
    printf("\ntimeline of the shutdown (%s):\n\n",
           B.tool ? "curfew-report show shutdown-record.json"
                  : "curfew-report not found; a short one from the record");
    fflush(stdout);
    int shown =
        B.tool && run_report_tool(B.tool, "show", B.record_path, NULL) == 0;
    if (!shown) {
        if (B.tool)
            printf("(curfew-report failed; a short timeline instead)\n");
        print_short_timeline(B.record_path);
    }
    int traced = B.tool && run_report_tool(B.tool, "trace", B.record_path,
                                           B.trace_path) == 0;
    int drawn = B.tool &&
                run_report_tool(B.tool, "svg", B.record_path, B.svg_path) == 0;

    printf("\nwritten in %s/:\n", B.dir);
    file_row("shutdown-record.json",
             "the shutdown record (R2): curfew-report show|trace|svg FILE");
    if (traced)
        file_row("shutdown-trace.json",
                 "Chrome trace: open it in https://ui.perfetto.dev");
    if (drawn)
        file_row("shutdown.svg", "the timeline as a picture");
    if (access(B.report_path, F_OK) == 0)
        file_row("shutdown-hang.json", "the browser's hang report (R1)");
    file_row("tab-N-record.json", "each tab's own shutdown record");
    for (int i = 0; i < B.ntabs; i++) {
        char name[40];
        snprintf(name, sizeof(name), "tab-%d-hang.json", B.tabs[i].index);
        char *p = path_join(B.dir, name);
        if (p && access(p, F_OK) == 0)
            file_row(name, "that tab's hang report (R1)");
        free(p);
    }
    /* The profile; telemetry.json is missing after a hang before it. */
    static const char *const profile[][2] = {
        {"telemetry.json", "every tab's and worker's event counts"},
        {"places.sqlite", "the history (SQLite)"},
        {"downloads.json", "the downloads list"},
        {"prefs.js", "the settings (prefs.js.bak: the one before)"},
    };
    for (size_t i = 0; i < sizeof(profile) / sizeof(profile[0]); i++) {
        char *p = path_join(B.dir, profile[i][0]);
        if (p && access(p, F_OK) == 0)
            file_row(profile[i][0], profile[i][1]);
        free(p);
    }
    fflush(stdout);
}

static int child_report_row(sqlite3_stmt *st, void *arg)
{
    int *n = arg;
    const char *json = (const char *)sqlite3_column_text(st, 0);
    if (json) {
        if ((*n)++ == 0)
            printf("\nA tab's watchdog fired. Its hang report reached the "
                   "browser before the tab\nexited (P6), and is in the "
                   "browser's record under \"children\":\n\n");
        print_hang_report(json, "a tab");
    }
    return 0;
}

/* A tab whose watchdog fired sent its report before exiting (P6); the
 * browser keeps it in its own record. Returns how many there are. */
static int show_tab_hangs(void)
{
    char *record, err[160];
    size_t len;
    int n = 0;
    if (read_file(B.record_path, &record, &len) != 0)
        return 0;
    json_query(record, "SELECT value FROM json_each(?1, '$.children')",
               child_report_row, &n, err, sizeof(err));
    free(record);
    return n;
}

static void row(int ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void row(int ok, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("  %-5s %-15s ", ok ? "ok" : "LOST", what);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* What telemetry.json says, per tab (indexed by tab number). */
static struct {
    unsigned seen; /* bit w-1: worker w was listed */
    uint64_t events[DEMO_WORKERS];
    uint64_t refused;
} tel[DEMO_MAX_TABS + 1];

static int telemetry_row(sqlite3_stmt *st, void *arg)
{
    (void)arg;
    int tab = sqlite3_column_int(st, 0), w = sqlite3_column_int(st, 1);
    if (tab >= 1 && tab <= DEMO_MAX_TABS && w >= 1 && w <= DEMO_WORKERS) {
        tel[tab].seen |= 1u << (w - 1);
        tel[tab].events[w - 1] = (uint64_t)sqlite3_column_int64(st, 2);
        tel[tab].refused = (uint64_t)sqlite3_column_int64(st, 3);
    }
    return 0;
}

static int int_row(sqlite3_stmt *st, void *arg)
{
    *(long long *)arg = sqlite3_column_type(st, 0) == SQLITE_NULL
                            ? -1
                            : sqlite3_column_int64(st, 0);
    return 0;
}

static int verify_events(void)
{
    int lost = 0;
    char err[200] = "";
    char *text = NULL;
    size_t len;
    memset(tel, 0, sizeof(tel));
    int r = read_file(B.telemetry_path, &text, &len);
    if (r)
        snprintf(err, sizeof(err), "telemetry.json: %s", strerror(-r));
    else
        json_query(text,
                   "SELECT json_extract(t.value, '$.tab'),"
                   " json_extract(w.value, '$.worker'),"
                   " json_extract(w.value, '$.events'),"
                   " json_extract(t.value, '$.refused')"
                   " FROM json_each(?1, '$.tabs') AS t,"
                   " json_each(t.value, '$.workers') AS w",
                   telemetry_row, NULL, err, sizeof(err));
    free(text);

    for (int i = 0; i < B.ntabs; i++) {
        struct tab *t = &B.tabs[i];
        pthread_mutex_lock(&B.mu);
        int exited = t->exited, status = t->status, bad = t->bad_messages;
        pthread_mutex_unlock(&B.mu);
        char what[24], how[80] = "still running", workers[160] = "";
        snprintf(what, sizeof(what), "%s events", t->name);
        if (exited)
            describe_status(status, how, sizeof(how));
        uint64_t sent = 0, counted = 0;
        int match = tel[t->index].refused == 0;
        for (int w = 0; w < DEMO_WORKERS; w++) {
            size_t n = strlen(workers);
            sent += t->sent[w];
            counted += tel[t->index].events[w];
            match = match && tel[t->index].events[w] == t->sent[w];
            snprintf(workers + n, sizeof(workers) - n, "%sworker-%d %llu",
                     w ? ", " : "", w + 1,
                     (unsigned long long)tel[t->index].events[w]);
        }
        unsigned all = (1u << DEMO_WORKERS) - 1;
        int seen = tel[t->index].seen != 0;
        if (t->misbehave && strcmp(t->misbehave, "crash") == 0) {
            /* Asked for: the tab must have died of it, the rest gone on. */
            int ok = !seen && exited && WIFSIGNALED(status) &&
                     WTERMSIG(status) == SIGABRT;
            row(ok, what, "crashed on purpose (%s): none expected", how);
            lost |= !ok;
        } else if (tel[t->index].seen == all && match) {
            row(1, what, "%llu sent = %llu in telemetry.json (%s)",
                (unsigned long long)sent, (unsigned long long)counted, workers);
        } else if (!seen) {
            row(0, what, "%llu sent, none in telemetry.json (%s%s)",
                (unsigned long long)sent, err[0] ? err : how,
                bad ? "; malformed telemetry" : "");
            lost = 1;
        } else {
            row(0, what, "%llu sent, %llu in telemetry.json (%s; %llu refused)",
                (unsigned long long)sent, (unsigned long long)counted, workers,
                (unsigned long long)tel[t->index].refused);
            lost = 1;
        }
    }
    return lost;
}

static int same_file(const char *path, const char *want, size_t want_len,
                     char **got)
{
    size_t len;
    if (read_file(path, got, &len) != 0)
        return 0;
    return len == want_len && memcmp(*got, want, len) == 0;
}

/* The evidence: each thing the browser did, against what is on disk now
 * that it has shut down. Returns nonzero if anything was lost. */
static int verify(void)
{
    int lost = 0;
    char err[200];
    printf("\nverification: what the browser did, against what is on disk "
           "now\n");
    lost |= verify_events();

    long accepted = atomic_load(&B.places.accepted);
    long rows = places_rows_on_disk(B.places_path, err, sizeof(err));
    if (rows < 0) {
        row(0, "history rows", "%ld inserted; places.sqlite: %s", accepted,
            err);
        lost = 1;
    } else {
        int ok = rows == accepted && atomic_load(&B.places.closed);
        row(ok, "history rows", "%ld inserted = %ld rows in places.sqlite%s",
            accepted, rows, ok ? "" : " (or not closed)");
        lost |= !ok;
    }

    struct buf want = {0};
    uint64_t change;
    char *got = NULL;
    long long on_disk = -1;
    downloads_render(&B.downloads, &want, &change);
    int ok = same_file(B.downloads_path, want.p, want.len, &got);
    if (got)
        json_query(got, "SELECT json_extract(?1, '$.change')", int_row,
                   &on_disk, err, sizeof(err));
    row(ok, "downloads.json", "last change #%llu, on disk: change #%lld%s",
        (unsigned long long)change, on_disk,
        ok ? " (the same list)" : ", a different list");
    lost |= !ok;
    free(got);
    buf_free(&want);

    got = NULL;
    ok = same_file(B.prefs_path, B.prefs.last.p, B.prefs.last.len, &got);
    row(ok, "settings",
        "prefs.js %s the last write asked for (generation %u, %zu bytes)",
        ok ? "=" : "differs from", B.prefs.generation, B.prefs.last.len);
    lost |= !ok;
    free(got);

    /* L3: at the end of xpcom-shutdown every short-lived object is gone;
     * the lifetime module would have put a "leaks" section in the record
     * otherwise (and strict_leaks made the shutdown unclean). */
    long long leaks = -1;
    char *record = NULL;
    size_t len;
    if (read_file(B.record_path, &record, &len) == 0)
        json_query(record, "SELECT json_array_length(?1, '$.leaks')", int_row,
                   &leaks, err, sizeof(err));
    free(record);
    int64_t cp = curfew_live_count(B.m_ipc, "ContentParent"),
            hc = curfew_live_count(B.m_necko, "HttpChannel"),
            sm = curfew_live_count(B.m_storage, "Statement");
    ok = cp == 0 && hc == 0 && sm == 0 && leaks <= 0;
    row(ok, "live objects",
        "ContentParent %lld, HttpChannel %lld, Statement %lld left; %s",
        (long long)cp, (long long)hc, (long long)sm,
        leaks <= 0 ? "no leaks in the record" : "leaks in the record");
    lost |= !ok;

    printf(lost ? "\nsomething was LOST (see above).\n" : "\nnothing lost.\n");
    return lost;
}

/* After curfew_run(): everything the demo shows at the end. */
static int finish(void)
{
    printf("shutdown complete in %lld ms.\n",
           (long long)atomic_load(&B.shutdown_ms));
    show_outputs();
    int hung_tabs = show_tab_hangs();
    int lost = verify();
    if (hung_tabs) {
        printf("exit status %d: a tab's watchdog fired.\n", DEMO_EXIT_HANG);
        return DEMO_EXIT_HANG;
    }
    return lost ? 1 : 0;
}

/* ---- setting up --------------------------------------------------------- */

static void die(const char *what, int err)
{
    fprintf(stderr, "curfew-demo: %s: %s\n", what, curfew_strerror(err));
    exit(1);
}

static char *out_path(const char *name)
{
    char *p = path_join(B.dir, name);
    if (!p)
        die("out of memory", -ENOMEM);
    return p;
}

/* Files of an earlier run in the same directory would confuse the
 * verification. */
static void clear_old_outputs(void)
{
    static const char *const names[] = {
        "shutdown-record.json",  "shutdown-hang.json", "shutdown-trace.json",
        "shutdown.svg",          "telemetry.json",     "places.sqlite",
        "places.sqlite-journal", "downloads.json",     "prefs.js",
        "prefs.js.bak"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *p = out_path(names[i]);
        unlink(p);
        free(p);
    }
    DIR *d = opendir(B.dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "tab-", 4) == 0 &&
            ((n > 12 && strcmp(e->d_name + n - 12, "-record.json") == 0) ||
             (n > 10 && strcmp(e->d_name + n - 10, "-hang.json") == 0))) {
            char *p = out_path(e->d_name);
            unlink(p);
            free(p);
        }
    }
    if (d)
        closedir(d);
}

static void add_phase(const char *fmt, const char *part)
{
    snprintf(B.phase_names[B.nphases++], sizeof(B.phase_names[0]), fmt, part);
}

/* The browser's phases. --serial cuts profile-before-change in one phase
 * per tab and per service: one wait after another. */
static void build_phases(curfew_phase_config *ph)
{
    add_phase("%s", PH_QUIT);
    add_phase("%s", PH_NET_TEARDOWN);
    add_phase("%s", PH_TEARDOWN);
    if (!B.opt.serial) {
        add_phase("%s", PH_BEFORE_CHANGE);
    } else {
        for (int i = 0; i < B.ntabs; i++)
            add_phase(PH_BEFORE_CHANGE "/%s", B.tabs[i].name);
        add_phase(PH_BEFORE_CHANGE "/%s", "places");
        add_phase(PH_BEFORE_CHANGE "/%s", "downloads");
        add_phase(PH_BEFORE_CHANGE "/%s", "prefs");
    }
    add_phase("%s", PH_TELEMETRY);
    add_phase("%s", PH_WILL_SHUTDOWN);
    add_phase("%s", PH_SHUTDOWN);
    add_phase("%s", PH_THREADS);
    for (unsigned i = 0; i < B.nphases; i++)
        ph[i] = (curfew_phase_config){B.phase_names[i], 0, 0};
}

/* Where a tab or a service shuts down. */
static const char *before_change(const char *part)
{
    char name[64];
    if (!B.opt.serial)
        return PH_BEFORE_CHANGE;
    snprintf(name, sizeof(name), PH_BEFORE_CHANGE "/%s", part);
    for (unsigned i = 0; i < B.nphases; i++)
        if (strcmp(B.phase_names[i], name) == 0)
            return B.phase_names[i];
    return PH_BEFORE_CHANGE;
}

static void add(const char *phase, const char *name, curfew_trigger_fn fn,
                void *arg)
{
    int r = curfew_add_blocker(curfew_phase(B.cf, phase), name, fn, arg, NULL);
    if (r)
        die(name, r);
}

static void print_header(int target)
{
    printf("curfew-demo: a browser with %d tab%s (%d worker threads each) "
           "browses for %.1f s, then quits.\n",
           B.ntabs, B.ntabs == 1 ? "" : "s", DEMO_WORKERS,
           (double)B.opt.run_ms / 1000.0);
    printf("  output in %s/\n", B.dir);
    if (B.opt.serial)
        printf("  --serial: profile-before-change waits for each tab and "
               "each service, one after another\n");
    if (B.opt.crash_child)
        printf("  --crash-child: tab-%d crashes in the middle of its "
               "shutdown\n",
               target);
    if (B.opt.hang == HANG_CHILD)
        printf("  --hang=child: a page of tab-%d never finishes unloading\n",
               target);
    if (B.opt.hang == HANG_WORKER)
        printf("  --hang=worker: a worker thread of tab-%d never stops\n",
               target);
    if (B.opt.hang == HANG_IO)
        printf("  --hang=io: the history's maintenance never returns\n");
    if (!B.tool)
        printf("  (curfew-report not found next to curfew-demo or in PATH: "
               "no trace or SVG)\n");
    fflush(stdout);
}

static void cleanup(void)
{
    uninstall_signals();
    stop_threads();
    places_free(&B.places);
    downloads_free(&B.downloads);
    prefs_free(&B.prefs);
    if (B.telemetry_io)
        curfew_io_destroy(B.telemetry_io);
    int r = curfew_destroy(B.cf);
    if (r)
        fprintf(stderr, "curfew-demo: curfew_destroy: %s\n",
                curfew_strerror(r));
    char **paths[] = {&B.record_path, &B.report_path,    &B.trace_path,
                      &B.svg_path,    &B.places_path,    &B.downloads_path,
                      &B.prefs_path,  &B.telemetry_path, &B.dir};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        free(*paths[i]);
        *paths[i] = NULL;
    }
}

int browser_main(const struct demo_options *opt)
{
    B.opt = *opt;
    B.tty = isatty(STDOUT_FILENO);
    B.started_ms = mono_ms();
    B.ntabs = opt->tabs;

    /* The output directory: the one asked for, or a fresh one here. */
    if (opt->out) {
        int r = make_dirs(opt->out);
        if (r)
            die(opt->out, r);
        B.dir = strdup(opt->out);
    } else {
        char tmpl[] = "curfew-demo-XXXXXX";
        if (!mkdtemp(tmpl))
            die("mkdtemp", -errno);
        B.dir = strdup(tmpl);
    }
    if (!B.dir)
        die("out of memory", -ENOMEM);
    B.record_path = out_path("shutdown-record.json");
    B.report_path = out_path("shutdown-hang.json");
    B.trace_path = out_path("shutdown-trace.json");
    B.svg_path = out_path("shutdown.svg");
    B.places_path = out_path("places.sqlite");
    B.downloads_path = out_path("downloads.json");
    B.prefs_path = out_path("prefs.js");
    B.telemetry_path = out_path("telemetry.json");
    clear_old_outputs();
    B.tool = report_tool(opt->self);

    /* One tab misbehaves when asked to: tab-2, or tab-1 if alone. */
    int target = B.ntabs >= 2 ? 2 : 1;
    for (int i = 0; i < B.ntabs; i++) {
        struct tab *t = &B.tabs[i];
        t->index = i + 1;
        snprintf(t->name, sizeof(t->name), "tab-%d", t->index);
        if (t->index == target)
            t->misbehave = opt->crash_child           ? "crash"
                           : opt->hang == HANG_CHILD  ? "hang"
                           : opt->hang == HANG_WORKER ? "hang-worker"
                                                      : NULL;
    }
    print_header(target);

    curfew_phase_config phases[MAX_PHASES];
    build_phases(phases);
    curfew_config cfg = {
        .phases = phases,
        .phase_count = B.nphases,
        /* Short in the --hang modes, so the demo does not make you wait;
         * never abort(): the hang report says what hung, no core dump. */
        .warn_after_ms = opt->hang ? HANG_WARN_MS : 5000,
        .crash_after_ms = opt->hang ? HANG_CRASH_MS : 30000,
        .on_timeout = CURFEW_TIMEOUT_EXIT,
        .timeout_exit_code = DEMO_EXIT_HANG,
        .report_path = B.report_path,
        .record_path = B.record_path,
        .process_name = "browser",
        .on_event = on_event,
        /* Contract L in the last two phases: short-lived objects must be
         * gone by the end of xpcom-shutdown, then the modules go. */
        .dynamic_phase = PH_SHUTDOWN,
        .static_phase = PH_THREADS,
        .strict_leaks = 1,
    };
    int r = curfew_create(&B.cf, &cfg);
    if (r)
        die("curfew_create", r);
    if ((r = later_start()) != 0)
        die("timer thread", r);
    if ((r = register_modules()) != 0)
        die("modules", r);

    if ((r = places_start(&B.places, B.cf, before_change("places"),
                          B.places_path, B.m_storage, opt->hang == HANG_IO)) !=
        0)
        die("places", r);
    if ((r = downloads_start(&B.downloads, B.cf, before_change("downloads"),
                             B.downloads_path)) != 0)
        die("downloads", r);
    if ((r = prefs_start(&B.prefs, B.cf, before_change("prefs"), B.prefs_path,
                         B.ntabs)) != 0)
        die("prefs", r);
    prefs_save(&B.prefs, "at start-up");
    curfew_io_options tio = {.phase = PH_TELEMETRY, .name = "telemetry I/O"};
    if ((r = curfew_io_create(B.cf, &tio, &B.telemetry_io)) != 0)
        die("telemetry I/O", r);

    add(PH_QUIT, "browser: stop the activity", quit_trigger, NULL);
    add(PH_NET_TEARDOWN, "network: close idle connections", sim_trigger,
        &net_teardown);
    add(PH_TEARDOWN, "add-ons: shut down", sim_trigger, &addons);
    add(PH_TELEMETRY, "telemetry: write telemetry.json", telemetry_trigger,
        NULL);
    add(PH_WILL_SHUTDOWN, "ipc: wait for the tab processes to exit",
        reap_trigger, NULL);
    add(PH_SHUTDOWN, "observers: release", sim_trigger, &observers);

    for (int i = 0; i < B.ntabs; i++)
        if ((r = spawn_tab(&B.tabs[i], before_change(B.tabs[i].name))) != 0)
            die(B.tabs[i].name, r);

    if ((r = install_signals()) != 0)
        die("signals", r);
    if ((r = start_thread(&B.activity, activity_main, NULL)) != 0)
        die("activity thread", -r);
    B.activity_started = 1;
    if (B.tty && start_thread(&B.progress, progress_main, NULL) == 0)
        B.progress_started = 1;

    /* Until the user quits (the activity thread calls curfew_begin) or a
     * signal arrives, then every phase. */
    curfew_run(B.cf);

    progress_stop();
    int code = finish();
    cleanup();
    return code;
}
