/* Signals (S1): SIGTERM and SIGINT begin the shutdown, a second SIGINT
 * exits at once after the record is rewritten, SIGQUIT writes a state
 * report.
 *
 * SPDX-License-Identifier: MIT
 *
 * Written against the public API only. A signal handler may do little: it
 * calls curfew_begin_from_signal() (atomics and a write) or writes one byte
 * to a pipe. Whatever takes a lock (the record, the state report) is done
 * by a helper thread that sleeps in read() on that pipe. The helper starts
 * at the first dispatch after the shutdown began (a listener on
 * CURFEW_EV_BEGIN), so an idle program has no thread of ours (C6); with
 * CURFEW_SIGNALS_QUIT it starts at install, since a state report may be
 * asked for before any shutdown. A second SIGINT that comes before the
 * helper exists (nobody has dispatched since the first) exits without
 * rewriting the record: there is nothing new to write, and the handler
 * cannot write it safely.
 */
#define _GNU_SOURCE
#include <curfew/report.h>
#include <curfew/signals.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Messages from the handlers (and uninstall) to the helper thread. */
#define MSG_EXIT 'X'  /* second SIGINT */
#define MSG_STATE 'Q' /* SIGQUIT */
#define MSG_STOP 'S'  /* uninstall */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_path_lock = PTHREAD_MUTEX_INITIALIZER;

/* One installation per process. The handlers read only the atomics. */
static struct {
    _Atomic(curfew *) cf;   /* the coordinator the handlers drive */
    _Atomic int pipe_wr;    /* the helper's pipe, write end */
    _Atomic int helper_up;  /* the helper reads the pipe */
    _Atomic int interrupts; /* SIGINTs after the shutdown had begun */
    _Atomic int in_handler; /* handlers running now */
    unsigned flags;         /* g_lock */
    int pipe_rd;            /* g_lock */
    int helper_started;     /* g_lock */
    pthread_t helper;       /* g_lock */
    struct sigaction old_term, old_int, old_quit; /* g_lock */
    char *state_path;                             /* g_path_lock */
} S = {.pipe_rd = -1};

/* The key of curfew_ext_set(): one listener per coordinator, however often
 * the signals are installed for it. */
static const char g_ext_key = 0;

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void on_signal(int signo)
{
    int saved = errno;
    atomic_fetch_add(&S.in_handler, 1);
    curfew *cf = atomic_load(&S.cf);
    if (cf) {
        if (signo == SIGQUIT) {
            char c = MSG_STATE;
            if (write(atomic_load(&S.pipe_wr), &c, 1) < 0) {
                /* A full pipe: reports are already queued. */
            }
        } else if (curfew_begin_from_signal(cf) == -EALREADY &&
                   signo == SIGINT) {
            /* The second SIGINT: the helper rewrites the record and exits.
             * Without a helper, or at a third SIGINT, exit now. */
            char c = MSG_EXIT;
            if (atomic_fetch_add(&S.interrupts, 1) > 0 ||
                !atomic_load(&S.helper_up) ||
                write(atomic_load(&S.pipe_wr), &c, 1) != 1)
                _exit(CURFEW_SIGNALS_EXIT_CODE);
        }
    }
    atomic_fetch_sub(&S.in_handler, 1);
    errno = saved;
}

/* The state report, to the file set (replaced atomically) or stderr. */
static void write_state(curfew *cf)
{
    char path[PATH_MAX];
    path[0] = '\0';
    pthread_mutex_lock(&g_path_lock);
    if (S.state_path && strlen(S.state_path) < sizeof(path) - 32)
        strcpy(path, S.state_path);
    pthread_mutex_unlock(&g_path_lock);
    if (!path[0]) {
        curfew_report_write_state(cf, 2);
        return;
    }
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    int fd =
        open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    int r = fd < 0 ? -errno : curfew_report_write_state(cf, fd);
    if (fd >= 0 && close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r != 0) {
        if (fd >= 0)
            unlink(tmp);
        char line[PATH_MAX + 128];
        int n = snprintf(line, sizeof(line),
                         "curfew: SIGQUIT: cannot write %s: %s; the state "
                         "report follows on stderr\n",
                         path, curfew_strerror(r));
        if (n > 0)
            write_all(2, line,
                      (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        curfew_report_write_state(cf, 2);
    }
}

static void exit_now(curfew *cf)
{
    if (!curfew_is_complete(cf))
        curfew_record_failure(cf, -EINTR,
                              "interrupted: a second SIGINT exited at once");
    int r = curfew_record_write_now(cf);
    char line[160];
    int n = snprintf(line, sizeof(line),
                     "curfew: second SIGINT: exiting at once (status %d)%s\n",
                     CURFEW_SIGNALS_EXIT_CODE,
                     r == 0 ? ", shutdown record written" : "");
    if (n > 0)
        write_all(2, line, (size_t)n);
    _exit(CURFEW_SIGNALS_EXIT_CODE);
}

typedef struct helper_args {
    curfew *cf;
    int fd;
} helper_args;

static void *helper_main(void *arg)
{
    helper_args a = *(helper_args *)arg;
    free(arg);
    for (;;) {
        char c;
        ssize_t n = read(a.fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || c == MSG_STOP)
            break;
        if (c == MSG_EXIT)
            exit_now(a.cf);
        else if (c == MSG_STATE)
            write_state(a.cf);
    }
    return NULL;
}

/* With g_lock held and the signals installed for cf. */
static int start_helper(curfew *cf)
{
    if (S.helper_started)
        return 0;
    helper_args *a = malloc(sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->cf = cf;
    a->fd = S.pipe_rd;
    /* The handlers run on the program's threads, not on this one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&S.helper, NULL, helper_main, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(a);
        return -rc;
    }
    S.helper_started = 1;
    atomic_store(&S.helper_up, 1);
    return 0;
}

/* CURFEW_EV_BEGIN arrives on the dispatching thread at the first dispatch
 * after the shutdown began: the earliest place a thread may start. */
static void on_event(const curfew_event *ev, void *arg)
{
    curfew *cf = arg;
    if (ev->type != CURFEW_EV_BEGIN)
        return;
    pthread_mutex_lock(&g_lock);
    if (atomic_load(&S.cf) == cf && start_helper(cf) != 0) {
        static const char msg[] =
            "curfew: signals: cannot start the helper thread; a second "
            "SIGINT will exit without rewriting the record\n";
        write_all(2, msg, sizeof(msg) - 1);
    }
    pthread_mutex_unlock(&g_lock);
}

static void restore(void)
{
    sigaction(SIGTERM, &S.old_term, NULL);
    sigaction(SIGINT, &S.old_int, NULL);
    if (S.flags & CURFEW_SIGNALS_QUIT)
        sigaction(SIGQUIT, &S.old_quit, NULL);
}

/* With g_lock held: undoes an installation for cf. */
static void teardown(void)
{
    restore();
    atomic_store(&S.cf, NULL);
    /* A handler that read the pointer before may still be using it. */
    while (atomic_load(&S.in_handler) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int wr = atomic_exchange(&S.pipe_wr, -1);
    if (S.helper_started) {
        char c = MSG_STOP;
        write_all(wr, &c, 1);
        pthread_join(S.helper, NULL);
        S.helper_started = 0;
    }
    atomic_store(&S.helper_up, 0);
    atomic_store(&S.interrupts, 0);
    close(S.pipe_rd);
    close(wr);
    S.pipe_rd = -1;
    pthread_mutex_lock(&g_path_lock);
    free(S.state_path);
    S.state_path = NULL;
    pthread_mutex_unlock(&g_path_lock);
}

/* curfew_destroy() without curfew_signals_uninstall(): the handlers must
 * not see a freed coordinator. */
static void on_destroy(void *ptr)
{
    pthread_mutex_lock(&g_lock);
    if (atomic_load(&S.cf) == ptr)
        teardown();
    pthread_mutex_unlock(&g_lock);
}

int curfew_signals_install(curfew *cf, unsigned flags)
{
    if (!cf || (flags & ~CURFEW_SIGNALS_QUIT))
        return -EINVAL;
    pthread_mutex_lock(&g_lock);
    curfew *cur = atomic_load(&S.cf);
    if (cur) {
        pthread_mutex_unlock(&g_lock);
        return cur == cf ? -EALREADY : -EBUSY;
    }
    int err = 0;
    if (!curfew_ext_get(cf, &g_ext_key)) {
        /* After curfew_begin the listener cannot be added any more; the
         * helper then starts below. */
        err = curfew_listen(cf, on_event, cf);
        if (err == -EBUSY)
            err = 0;
        if (err == 0)
            err = curfew_ext_set(cf, &g_ext_key, cf, on_destroy);
        if (err) {
            pthread_mutex_unlock(&g_lock);
            return err;
        }
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
        err = -errno;
        pthread_mutex_unlock(&g_lock);
        return err;
    }
    /* The helper blocks in read(); the handlers never block in write(). */
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) & ~O_NONBLOCK);
    S.pipe_rd = p[0];
    atomic_store(&S.pipe_wr, p[1]);
    atomic_store(&S.interrupts, 0);
    S.flags = flags;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGQUIT);
    atomic_store(&S.cf, cf);
    if (sigaction(SIGTERM, &sa, &S.old_term) != 0)
        err = -errno;
    if (!err && sigaction(SIGINT, &sa, &S.old_int) != 0) {
        err = -errno;
        sigaction(SIGTERM, &S.old_term, NULL);
    }
    if (!err && (flags & CURFEW_SIGNALS_QUIT) &&
        sigaction(SIGQUIT, &sa, &S.old_quit) != 0) {
        err = -errno;
        sigaction(SIGTERM, &S.old_term, NULL);
        sigaction(SIGINT, &S.old_int, NULL);
    }
    if (err) {
        atomic_store(&S.cf, NULL);
        close(p[0]);
        close(p[1]);
        S.pipe_rd = -1;
        atomic_store(&S.pipe_wr, -1);
        pthread_mutex_unlock(&g_lock);
        return err;
    }
    if ((flags & CURFEW_SIGNALS_QUIT) || curfew_current_phase(cf)) {
        err = start_helper(cf);
        if (err)
            teardown();
    }
    pthread_mutex_unlock(&g_lock);
    return err;
}

int curfew_signals_uninstall(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    pthread_mutex_lock(&g_lock);
    if (atomic_load(&S.cf) != cf) {
        pthread_mutex_unlock(&g_lock);
        return -ENOENT;
    }
    teardown();
    pthread_mutex_unlock(&g_lock);
    return 0;
}

int curfew_signals_set_state_path(curfew *cf, const char *path)
{
    if (!cf || (path && !*path))
        return -EINVAL;
    char *copy = NULL;
    if (path && !(copy = strdup(path)))
        return -ENOMEM;
    pthread_mutex_lock(&g_lock);
    if (atomic_load(&S.cf) != cf) {
        pthread_mutex_unlock(&g_lock);
        free(copy);
        return -ENOENT;
    }
    pthread_mutex_lock(&g_path_lock);
    free(S.state_path);
    S.state_path = copy;
    pthread_mutex_unlock(&g_path_lock);
    pthread_mutex_unlock(&g_lock);
    return 0;
}
