/* curfew-glib-ticker: a timer-driven fake server on a GLib main loop that
 * shuts down cleanly on SIGTERM or Ctrl-C (S1, S4).
 *
 * SPDX-License-Identifier: MIT
 *
 *   curfew-glib-ticker [--state PATH] [--record PATH]
 *
 * Every 10 ms a timer accepts a job and queues it for a worker thread,
 * which takes 5-25 ms per job. It prints "ready" once running. When the
 * shutdown begins:
 *   stop-accepting  the timer is removed: no new job;
 *   drain           the worker finishes every queued job, then stops;
 *   persist         the number of jobs done is written to --state PATH;
 * and at CURFEW_EV_COMPLETE the main loop quits. Every accepted job is
 * done: the program prints "accepted N, done N" and exits 0 only then.
 */
#define _POSIX_C_SOURCE 200809L
#include <curfew.h>
#include <curfew/glib.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned queued;    /* jobs waiting for the worker */
    unsigned long done; /* jobs finished */
    int stopping;       /* drain began: finish the queue, then stop */
    curfew_blocker drain;
} W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, {0, 0}};

static unsigned long accepted;
static guint timer_id;
static GMainLoop *main_loop;
static const char *state_path;

static void *worker_main(void *arg)
{
    (void)arg;
    unsigned seed = 1;
    pthread_mutex_lock(&W.lock);
    for (;;) {
        while (!W.queued && !W.stopping)
            pthread_cond_wait(&W.cond, &W.lock);
        if (!W.queued)
            break; /* stopping, and the queue is empty */
        W.queued--;
        pthread_mutex_unlock(&W.lock);
        seed = seed * 1103515245u + 12345u;
        struct timespec ts = {0, (long)(5 + (seed >> 16) % 21) * 1000000L};
        nanosleep(&ts, NULL); /* the "work" */
        pthread_mutex_lock(&W.lock);
        W.done++;
    }
    curfew_blocker drain = W.drain;
    pthread_mutex_unlock(&W.lock);
    curfew_blocker_done(drain); /* any thread may finish a blocker */
    return NULL;
}

static gboolean accept_job(gpointer data)
{
    (void)data;
    pthread_mutex_lock(&W.lock);
    W.queued++;
    accepted++;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
    return G_SOURCE_CONTINUE;
}

static int stop_accepting(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    g_source_remove(timer_id);
    return CURFEW_DONE;
}

static int drain(curfew_blocker self, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.lock);
    W.drain = self;
    W.stopping = 1;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
    return CURFEW_PENDING; /* the worker says when the queue is empty */
}

static int persist(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    if (!state_path)
        return CURFEW_DONE;
    FILE *f = fopen(state_path, "w");
    if (!f)
        return -errno;
    pthread_mutex_lock(&W.lock);
    fprintf(f, "done %lu\n", W.done);
    pthread_mutex_unlock(&W.lock);
    return fclose(f) == 0 ? CURFEW_DONE : -errno;
}

static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type == CURFEW_EV_PHASE_BEGIN)
        fprintf(stderr, "glib-ticker: phase %s\n", ev->phase);
    else if (ev->type == CURFEW_EV_COMPLETE)
        g_main_loop_quit(main_loop); /* GLib loops do not end by themselves */
}

int main(int argc, char **argv)
{
    const char *record = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            state_path = argv[++i];
        else if (strcmp(argv[i], "--record") == 0 && i + 1 < argc)
            record = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--state PATH] [--record PATH]\n",
                    argv[0]);
            return 2;
        }
    }

    curfew *cf;
    curfew_config cfg = {0};
    cfg.process_name = "glib-ticker";
    cfg.record_path = record;
    cfg.on_event = on_event;
    int rc = curfew_create(&cf, &cfg);
    if (rc != 0) {
        fprintf(stderr, "curfew_create: %s\n", curfew_strerror(rc));
        return 1;
    }
    curfew_add_blocker(curfew_phase(cf, "stop-accepting"), "job timer",
                       stop_accepting, NULL, NULL);
    curfew_add_blocker(curfew_phase(cf, "drain"), "worker queue", drain, NULL,
                       NULL);
    curfew_add_blocker(curfew_phase(cf, "persist"), "state file", persist, NULL,
                       NULL);

    pthread_t worker;
    if (pthread_create(&worker, NULL, worker_main, NULL) != 0)
        return 1;
    main_loop = g_main_loop_new(NULL, FALSE);
    timer_id = g_timeout_add(10, accept_job, NULL);
    if ((rc = curfew_glib_attach(cf, NULL)) != 0 ||
        (rc = curfew_signals_install(cf, CURFEW_SIGNALS_QUIT)) != 0) {
        fprintf(stderr, "curfew: %s\n", curfew_strerror(rc));
        return 1;
    }
    if (curfew_notify_attach(cf) == 0)
        curfew_notify_send("READY=1");
    printf("ready\n");
    fflush(stdout);

    g_main_loop_run(main_loop); /* until on_event quits it */

    pthread_join(worker, NULL);
    curfew_signals_uninstall(cf);
    curfew_glib_detach(cf);
    g_main_loop_unref(main_loop);
    int clean = curfew_is_complete(cf);
    curfew_destroy(cf);
    printf("accepted %lu, done %lu\n", accepted, W.done);
    return clean && accepted == W.done ? 0 : 1;
}
