/* The service-manager notify protocol (S2), spoken directly: one datagram
 * per message to the AF_UNIX socket named by $NOTIFY_SOCKET.
 *
 * SPDX-License-Identifier: MIT
 *
 * Written against the public API only. Before the shutdown begins nothing
 * happens (C6): the socket is open, a listener is registered, and that is
 * all. At CURFEW_EV_BEGIN (the first dispatch after curfew_begin) the
 * listener sends STOPPING=1 and starts a notify thread, which every
 * interval compares the status text with the last one sent and the count
 * of finished blockers with the count at the last extension; a phase event
 * wakes it early for the status. At CURFEW_EV_COMPLETE the listener stops
 * and joins the thread, then sends the last status, so the messages never
 * cross and the thread never outlives the shutdown.
 */
#define _GNU_SOURCE
#include <curfew/notify.h>
#include <curfew/report.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_INTERVAL_MS 1000
#define DEFAULT_EXTEND_MS 10000
/* The pending blockers shown in STATUS=: the first ones that fit. */
#define SUMMARY_MAX 240
#define STATUS_MAX 512

typedef struct nstate {
    curfew *cf;
    int fd;
    struct sockaddr_un addr;
    socklen_t alen;
    int32_t interval_ms, extend_ms;
    _Atomic int warned; /* a failed send was reported on stderr */

    pthread_mutex_t mu;
    pthread_cond_t cond;
    int running, stop, kick; /* mu */
    pthread_t thread;

    /* The notify thread's own. */
    char last_status[STATUS_MAX];
    int64_t last_finished;
    const char *last_phase;
} nstate;

static const char g_ext_key = 0;

static int parse_address(const char *e, struct sockaddr_un *sa, socklen_t *len)
{
    if (!e || !*e)
        return -ENOENT;
    size_t n = strlen(e);
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (e[0] == '/') {
        if (n >= sizeof(sa->sun_path))
            return -EINVAL;
        memcpy(sa->sun_path, e, n);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    if (e[0] == '@') {
        /* An abstract socket: a NUL first, then the name, no NUL after. */
        if (n < 2 || n > sizeof(sa->sun_path))
            return -EINVAL;
        memcpy(sa->sun_path + 1, e + 1, n - 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        return 0;
    }
    return -EINVAL;
}

static int send_to(int fd, const struct sockaddr_un *sa, socklen_t alen,
                   const char *msg)
{
    for (;;) {
        ssize_t r = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT,
                           (const struct sockaddr *)sa, alen);
        if (r >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

static void send_msg(nstate *st, const char *msg)
{
    int r = send_to(st->fd, &st->addr, st->alen, msg);
    if (r != 0 && !atomic_exchange(&st->warned, 1))
        fprintf(stderr,
                "curfew: notify: cannot send to NOTIFY_SOCKET: %s (further "
                "failures are not reported)\n",
                curfew_strerror(r));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "STATUS=stopping: PHASE; waiting for BARRIER: NAME (STATUS), ...", one
 * line whatever the names hold. */
static void compose_status(nstate *st, char *out, size_t size)
{
    const char *phase = curfew_current_phase(st->cf);
    char summary[SUMMARY_MAX];
    size_t n = curfew_pending_summary(st->cf, summary, sizeof(summary));
    if (n >= 2 && summary[n - 2] == ':' && summary[n - 1] == ' ')
        n = 0; /* "barrier: " with nothing pending: it is completing */
    int k = snprintf(out, size, "STATUS=stopping: %s%s%s%s", phase ? phase : "",
                     n ? "; waiting for " : "", n ? summary : "",
                     n + 1 >= sizeof(summary) ? "..." : "");
    if (k < 0)
        out[0] = '\0';
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
}

/* A look at the shutdown: the status when it changed; at an interval's
 * end, an extension when blockers finished or the phase moved. */
static void look(nstate *st, int interval_end)
{
    char status[STATUS_MAX];
    compose_status(st, status, sizeof(status));
    if (strcmp(status, st->last_status) != 0) {
        send_msg(st, status);
        memcpy(st->last_status, status, sizeof(status));
    }
    if (!interval_end)
        return;
    int64_t finished = curfew_blockers_finished(st->cf);
    const char *phase = curfew_current_phase(st->cf);
    if (finished > st->last_finished || phase != st->last_phase) {
        char msg[64];
        snprintf(msg, sizeof(msg), "EXTEND_TIMEOUT_USEC=%lld",
                 (long long)st->extend_ms * 1000);
        send_msg(st, msg);
        st->last_finished = finished;
        st->last_phase = phase;
    }
}

static void *notify_main(void *arg)
{
    nstate *st = arg;
    look(st, 0);
    int64_t next = now_ms() + st->interval_ms;
    pthread_mutex_lock(&st->mu);
    while (!st->stop) {
        int64_t t = now_ms();
        if (st->kick || t >= next) {
            int end = t >= next;
            st->kick = 0;
            pthread_mutex_unlock(&st->mu);
            look(st, end);
            pthread_mutex_lock(&st->mu);
            if (end)
                next = t + st->interval_ms;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t wait = next - t;
        ts.tv_sec += wait / 1000;
        ts.tv_nsec += (long)(wait % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&st->cond, &st->mu, &ts);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static void stop_thread(nstate *st)
{
    pthread_mutex_lock(&st->mu);
    int running = st->running;
    st->stop = 1;
    st->running = 0;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->mu);
    if (running)
        pthread_join(st->thread, NULL);
}

static void on_event(const curfew_event *ev, void *arg)
{
    nstate *st = arg;
    switch (ev->type) {
    case CURFEW_EV_BEGIN: {
        send_msg(st, "STOPPING=1");
        /* The baseline of progress, taken here so that blockers finishing
         * before the thread runs count. */
        st->last_status[0] = '\0';
        st->last_finished = curfew_blockers_finished(st->cf);
        st->last_phase = curfew_current_phase(st->cf);
        pthread_mutex_lock(&st->mu);
        int rc = pthread_create(&st->thread, NULL, notify_main, st);
        st->running = rc == 0;
        pthread_mutex_unlock(&st->mu);
        if (rc != 0)
            fprintf(stderr,
                    "curfew: notify: cannot start the notify thread (%s): "
                    "no STATUS= or EXTEND_TIMEOUT_USEC= will be sent\n",
                    strerror(rc));
        break;
    }
    case CURFEW_EV_PHASE_BEGIN:
    case CURFEW_EV_PHASE_END:
        pthread_mutex_lock(&st->mu);
        st->kick = 1;
        pthread_cond_signal(&st->cond);
        pthread_mutex_unlock(&st->mu);
        break;
    case CURFEW_EV_COMPLETE: {
        stop_thread(st);
        char msg[96];
        snprintf(msg, sizeof(msg),
                 "STATUS=stopped: shutdown complete in %lld ms",
                 (long long)ev->duration_ms);
        send_msg(st, msg);
        break;
    }
    default:
        break;
    }
}

static void free_state(void *ptr)
{
    nstate *st = ptr;
    stop_thread(st);
    if (st->fd >= 0)
        close(st->fd);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cond);
    free(st);
}

int curfew_notify_attach_opts(curfew *cf, const curfew_notify_options *opts)
{
    curfew_notify_options o = {0, 0};
    if (opts)
        o = *opts;
    if (!cf || o.interval_ms < 0 || o.extend_ms < 0)
        return -EINVAL;
    if (!o.interval_ms)
        o.interval_ms = DEFAULT_INTERVAL_MS;
    if (!o.extend_ms)
        o.extend_ms = o.interval_ms > DEFAULT_EXTEND_MS ? o.interval_ms
                                                        : DEFAULT_EXTEND_MS;
    if (o.extend_ms < o.interval_ms)
        return -EINVAL;

    struct sockaddr_un sa;
    socklen_t alen;
    int err = parse_address(getenv("NOTIFY_SOCKET"), &sa, &alen);
    if (err)
        return err;
    if (curfew_current_phase(cf))
        return -EBUSY;
    if (curfew_ext_get(cf, &g_ext_key))
        return -EALREADY;

    nstate *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    st->cf = cf;
    st->addr = sa;
    st->alen = alen;
    st->interval_ms = o.interval_ms;
    st->extend_ms = o.extend_ms;
    pthread_mutex_init(&st->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&st->cond, &ca);
    pthread_condattr_destroy(&ca);
    st->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (st->fd < 0) {
        err = -errno;
        free_state(st);
        return err;
    }
    err = curfew_ext_set(cf, &g_ext_key, st, free_state);
    if (err) {
        free_state(st);
        return err == -EEXIST ? -EALREADY : err;
    }
    /* From here st belongs to cf. A listener that cannot be added leaves
     * it unused until curfew_destroy(). */
    return curfew_listen(cf, on_event, st);
}

int curfew_notify_attach(curfew *cf)
{
    return curfew_notify_attach_opts(cf, NULL);
}

int curfew_notify_send(const char *message)
{
    if (!message || !*message)
        return -EINVAL;
    struct sockaddr_un sa;
    socklen_t alen;
    int err = parse_address(getenv("NOTIFY_SOCKET"), &sa, &alen);
    if (err)
        return err;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    err = send_to(fd, &sa, alen, message);
    close(fd);
    return err;
}
