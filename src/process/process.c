/* Process trees (contract section P), built on channels and the public
 * core API.
 *
 * SPDX-License-Identifier: MIT
 *
 * Parent: one "process thread" per coordinator owns every child's control
 * channel, pidfd and force-kill timer in one epoll set. It spawns the
 * children itself, so PR_SET_PDEATHSIG (tied to the thread that made the
 * child) follows a thread that lives as long as the coordinator. Other
 * threads talk to it through io->mu-guarded flags and outboxes and an
 * eventfd. A child is reaped through its pidfd with waitpid() on its own
 * pid only, so no SIGCHLD handler exists to steal the program's other
 * children.
 *
 * Child: one process thread owns the channel to the parent; a listener on
 * the coordinator's events sends FinishShutdown and hang reports through
 * it and waits (bounded) until they are written.
 *
 * Control messages on the channel's one "control" actor:
 *   1 SHUTDOWN (parent -> child): u32 budget in ms (P7)
 *   2 STATUS (child -> parent): the pending blockers (P5)
 *   3 FINISH (child -> parent): FinishShutdown (P3)
 *   4 HANG_REPORT (child -> parent): the child's hang report (P6)
 *   >= CURFEW_PROC_MSG_USER: the program's own messages
 */
#define _GNU_SOURCE
#include <curfew/channel.h>
#include <curfew/process.h>
#include <curfew/report.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char **environ;

#define CTL_KIND 0x43465750u /* "CFWP" */
#define MSG_SHUTDOWN 1u
#define MSG_STATUS 2u
#define MSG_FINISH 3u
#define MSG_HANG 4u
#define DEFAULT_KILL_MS 5000
#define DEFAULT_ORPHAN_MS 5000
#define FLUSH_WAIT_MS 2000

enum { T_WAKE, T_CHAN, T_PID };

typedef struct tag {
    int kind;
    void *obj;
} tag;

typedef struct outmsg {
    struct outmsg *next;
    uint32_t type;
    size_t len;
    char data[];
} outmsg;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static outmsg *outmsg_new(uint32_t type, const void *data, size_t len)
{
    outmsg *m = malloc(sizeof(*m) + (len ? len : 1));
    if (!m)
        return NULL;
    m->next = NULL;
    m->type = type;
    m->len = len;
    if (len)
        memcpy(m->data, data, len);
    return m;
}

static void wake_fd(int fd)
{
    uint64_t one = 1;
    ssize_t r = write(fd, &one, sizeof(one));
    (void)r; /* EAGAIN: already readable */
}

static void drain_fd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) > 0)
        ;
}

static void epoll_set(int ep, int op, int fd, uint32_t events, tag *t)
{
    struct epoll_event ev = {.events = events, .data.ptr = t};
    epoll_ctl(ep, op, fd, &ev);
}

/* Takes a channel's descriptor out of the epoll set, if the channel still
 * has it: a closed channel has closed it already (which removed it from
 * the set), and its number may now belong to another thread's file. */
static void epoll_forget(int ep, const curfew_channel *ch)
{
    int fd = curfew_channel_fd(ch);
    if (fd >= 0)
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
}

static uint32_t chan_events(const curfew_channel *ch)
{
    int e = curfew_channel_events(ch);
    return (e & POLLIN ? EPOLLIN : 0) | (e & POLLOUT ? EPOLLOUT : 0);
}

/* ============================ parent ===================================== */

typedef struct procman procman;

struct curfew_proc {
    procman *pm;
    curfew_proc *next;
    pid_t pid;
    int pidfd;
    char *name;
    curfew_proc_options opts;
    int32_t kill_after_ms;
    curfew_channel *ch;
    curfew_actor *ctl;
    tag tch, tpid;
    int chfd;
    curfew_blocker blocker;
    int shutdown_requested, shutdown_sent, finish_received, killed, proto_error,
        reaped, freed;
    int status;
    int64_t kill_deadline;
    outmsg *out_head, *out_tail;
};

typedef struct spawn_cmd {
    struct spawn_cmd *next;
    char *const *argv;
    char *const *envp;
    int child_fd;
    int done, err;
    pid_t pid;
} spawn_cmd;

struct procman {
    curfew *cf;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int epfd, wakefd;
    tag twake;
    pthread_t thr;
    int started, stop;
    curfew_proc *procs;
    spawn_cmd *cmds;
};

static const char pm_key;

static void pm_wake(procman *pm)
{
    wake_fd(pm->wakefd);
}

static void signame(int sig, char *buf, size_t n)
{
    const char *s = sigabbrev_np(sig);
    snprintf(buf, n, "%d%s%s%s", sig, s ? " (SIG" : "", s ? s : "",
             s ? ")" : "");
}

/* The blocker's end once the child is reaped (P4). With pm->mu held. */
static void settle(curfew_proc *p)
{
    char what[160];
    if (p->finish_received)
        return; /* done at FinishShutdown */
    if (p->killed && !p->proto_error) {
        snprintf(what, sizeof(what),
                 "force-killed after %d ms without FinishShutdown",
                 (int)p->kill_after_ms);
        curfew_blocker_expire(p->blocker, what);
        return;
    }
    if (p->proto_error) {
        curfew_blocker_fail(p->blocker, -EPROTO,
                            "garbage on the control channel: killed");
        return;
    }
    if (WIFEXITED(p->status)) {
        snprintf(what, sizeof(what),
                 "exited with status %d before "
                 "FinishShutdown",
                 WEXITSTATUS(p->status));
    } else if (WIFSIGNALED(p->status)) {
        char sig[48];
        signame(WTERMSIG(p->status), sig, sizeof(sig));
        snprintf(what, sizeof(what), "killed by signal %s", sig);
    } else {
        snprintf(what, sizeof(what), "ended with wait status %#x", p->status);
    }
    curfew_blocker_fail(p->blocker, -ECHILD, what);
}

static void kill_child(curfew_proc *p)
{
    if (p->reaped || p->killed)
        return;
    p->killed = 1;
#ifdef SYS_pidfd_send_signal
    if (p->pidfd >= 0 &&
        syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0) == 0)
        return;
#endif
    kill(p->pid, SIGKILL);
}

static void ctl_message(curfew_actor *a, uint32_t type, const void *data,
                        size_t len, void *arg)
{
    curfew_proc *p = arg;
    procman *pm = p->pm;
    (void)a;
    if (type >= CURFEW_PROC_MSG_USER) {
        if (p->opts.on_message)
            p->opts.on_message(p, type, data, len, p->opts.arg);
        return;
    }
    pthread_mutex_lock(&pm->mu);
    switch (type) {
    case MSG_STATUS: {
        /* P5: what the child waits for, in its blocker here. */
        char text[CURFEW_STATUS_MAX + 1];
        size_t n = len < CURFEW_STATUS_MAX ? len : CURFEW_STATUS_MAX;
        memcpy(text, data, n);
        text[n] = '\0';
        curfew_blocker_status(p->blocker, "%s", text);
        break;
    }
    case MSG_FINISH:
        /* P3: every message before this one was handled already. */
        if (!p->finish_received) {
            p->finish_received = 1;
            curfew_blocker_status(p->blocker, "finished");
            curfew_blocker_done(p->blocker);
        }
        break;
    case MSG_HANG: {
        /* P6: the child's report goes under "children". */
        int r = curfew_report_add_child(pm->cf, data, len);
        if (r == 0)
            curfew_blocker_status(p->blocker, "the child reported a hang");
        else
            curfew_blocker_status(p->blocker,
                                  "the child reported a hang; its report "
                                  "was refused: %s",
                                  curfew_strerror(r));
        break;
    }
    default:
        break;
    }
    pthread_mutex_unlock(&pm->mu);
}

static void ctl_destroyed(curfew_actor *a, curfew_destroy_reason r, void *arg)
{
    curfew_proc *p = arg;
    (void)a;
    (void)r;
    p->ctl = NULL;
}

static const curfew_actor_ops ctl_ops = {ctl_message, NULL, ctl_destroyed};

static void chan_closed(curfew_channel *ch, int err, void *arg)
{
    curfew_proc *p = arg;
    (void)ch;
    if (err == -EPROTO && !p->finish_received) {
        /* A child that breaks the protocol is treated as crashed. */
        pthread_mutex_lock(&p->pm->mu);
        p->proto_error = 1;
        kill_child(p);
        pthread_mutex_unlock(&p->pm->mu);
    }
}

static int pm_trigger(curfew_blocker self, void *arg)
{
    curfew_proc *p = arg;
    (void)self;
    pthread_mutex_lock(&p->pm->mu);
    p->shutdown_requested = 1;
    pm_wake(p->pm);
    pthread_mutex_unlock(&p->pm->mu);
    return CURFEW_PENDING;
}

/* On the process thread: drains what the child wrote, then reaps. */
static void reap(procman *pm, curfew_proc *p)
{
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0)
        return;
    if (r < 0 && errno != ECHILD)
        return;
    if (p->ch) {
        /* The child is gone: everything it wrote is in the socket now,
         * and is handled before its end is decided (P3). */
        for (int i = 0; i < 64 && curfew_channel_dispatch(p->ch) == 0; i++)
            if (!(curfew_channel_events(p->ch) & POLLIN))
                break;
        epoll_forget(pm->epfd, p->ch);
        curfew_channel_free(p->ch);
        p->ch = NULL;
    }
    if (p->pidfd >= 0) {
        epoll_ctl(pm->epfd, EPOLL_CTL_DEL, p->pidfd, NULL);
        close(p->pidfd);
        p->pidfd = -1;
    }
    pthread_mutex_lock(&pm->mu);
    p->status = r < 0 ? 0 : st;
    p->reaped = 1;
    settle(p);
    pthread_mutex_unlock(&pm->mu);
    if (p->opts.on_exit)
        p->opts.on_exit(p, p->status, p->opts.arg);
}

static void send_pending(procman *pm, curfew_proc *p)
{
    pthread_mutex_lock(&pm->mu);
    int do_shutdown = p->shutdown_requested && !p->shutdown_sent;
    if (do_shutdown)
        p->shutdown_sent = 1;
    outmsg *m = p->out_head;
    p->out_head = p->out_tail = NULL;
    pthread_mutex_unlock(&pm->mu);
    for (; m;) {
        outmsg *n = m->next;
        if (p->ctl)
            curfew_actor_send(p->ctl, m->type, m->data, m->len);
        free(m);
        m = n;
    }
    if (do_shutdown) {
        int64_t budget = p->kill_after_ms > 0 ? p->kill_after_ms : -1;
        int64_t left = curfew_budget_left_ms(pm->cf);
        if (left >= 0 && (budget < 0 || left < budget))
            budget = left;
        /* P7: the child's watchdog must act before the parent's, so its
         * report arrives first: a tenth (at least 100 ms) is kept back. */
        if (budget > 0) {
            int64_t keep = budget / 10 < 100 ? 100 : budget / 10;
            budget = budget > keep + 1 ? budget - keep : 1;
        }
        unsigned char b[4];
        uint32_t v = budget < 0 ? 0 : (uint32_t)budget;
        b[0] = (unsigned char)(v >> 24);
        b[1] = (unsigned char)(v >> 16);
        b[2] = (unsigned char)(v >> 8);
        b[3] = (unsigned char)v;
        if (p->ctl)
            curfew_actor_send(p->ctl, MSG_SHUTDOWN, b, 4);
        curfew_blocker_status(p->blocker, "Shutdown sent");
        if (p->kill_after_ms > 0)
            p->kill_deadline = now_ns() + (int64_t)p->kill_after_ms * 1000000;
    }
}

static int do_spawn(procman *pm, spawn_cmd *c)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int r = posix_spawn_file_actions_init(&fa);
    if (r)
        return -r;
    posix_spawnattr_init(&at);
    /* Same number: the child's copy loses close-on-exec, and only it. */
    posix_spawn_file_actions_adddup2(&fa, c->child_fd, c->child_fd);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    r = posix_spawnp(&c->pid, c->argv[0], &fa, &at, c->argv, c->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    (void)pm;
    return -r;
}

static void free_proc(curfew_proc *p)
{
    outmsg *m = p->out_head;
    while (m) {
        outmsg *n = m->next;
        free(m);
        m = n;
    }
    free(p->name);
    free(p);
}

static void *pm_thread(void *arg)
{
    procman *pm = arg;
    /* The thread takes no signals: they belong to the program. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        int64_t next = -1, now = now_ns();
        int poll_reap = 0;
        pthread_mutex_lock(&pm->mu);
        if (pm->stop) {
            pthread_mutex_unlock(&pm->mu);
            break;
        }
        for (spawn_cmd *c = pm->cmds; c; c = c->next) {
            if (!c->done) {
                c->err = do_spawn(pm, c);
                c->done = 1;
            }
        }
        pm->cmds = NULL;
        pthread_cond_broadcast(&pm->cv);
        for (curfew_proc *p = pm->procs; p; p = p->next) {
            if (p->kill_deadline && !p->reaped && !p->killed) {
                if (now >= p->kill_deadline)
                    kill_child(p);
                else if (next < 0 || p->kill_deadline < next)
                    next = p->kill_deadline;
            }
            if (!p->reaped && p->pidfd < 0)
                poll_reap = 1;
        }
        /* Free the handles their owners let go of. */
        for (curfew_proc **pp = &pm->procs; *pp;) {
            if ((*pp)->freed && (*pp)->reaped) {
                curfew_proc *d = *pp;
                *pp = d->next;
                free_proc(d);
            } else {
                pp = &(*pp)->next;
            }
        }
        /* New children are pushed at the head by other threads; only this
         * thread unlinks. Walking from a head read under the lock is safe
         * without it. */
        curfew_proc *head = pm->procs;
        pthread_mutex_unlock(&pm->mu);

        for (curfew_proc *p = head; p; p = p->next) {
            if (p->reaped)
                continue;
            if (p->ch) {
                send_pending(pm, p);
                /* A Shutdown just sent starts the force-kill timer (P4):
                 * the wait below must wake for it. */
                if (p->kill_deadline && !p->killed &&
                    (next < 0 || p->kill_deadline < next))
                    next = p->kill_deadline;
                int t = curfew_channel_timeout_ms(p->ch);
                if (t >= 0) {
                    int64_t at = now + (int64_t)t * 1000000;
                    if (next < 0 || at < next)
                        next = at;
                }
                if (curfew_channel_fd(p->ch) >= 0)
                    epoll_set(pm->epfd, EPOLL_CTL_MOD, p->chfd,
                              chan_events(p->ch), &p->tch);
            }
            if (p->pidfd < 0)
                reap(pm, p);
        }
        int timeout = -1;
        if (next >= 0) {
            int64_t ms = (next - now_ns() + 999999) / 1000000;
            timeout = ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
        }
        if (poll_reap && (timeout < 0 || timeout > 50))
            timeout = 50;
        struct epoll_event evs[32];
        int n = epoll_wait(pm->epfd, evs, 32, timeout);
        for (int i = 0; i < n; i++) {
            tag *t = evs[i].data.ptr;
            if (t->kind == T_WAKE) {
                drain_fd(pm->wakefd);
            } else if (t->kind == T_CHAN) {
                curfew_proc *p = t->obj;
                if (p->ch && curfew_channel_dispatch(p->ch) == 1) {
                    epoll_forget(pm->epfd, p->ch);
                    curfew_channel_free(p->ch);
                    p->ch = NULL;
                }
            } else {
                reap(pm, t->obj);
            }
        }
    }
    return NULL;
}

static void pm_free(void *arg)
{
    procman *pm = arg;
    if (pm->started) {
        /* The process thread first: after it, nothing reaps, settles or
         * calls back concurrently, and the coordinator's blockers are not
         * touched while they are freed. */
        pthread_mutex_lock(&pm->mu);
        pm->stop = 1;
        pthread_mutex_unlock(&pm->mu);
        pm_wake(pm);
        pthread_join(pm->thr, NULL);
        /* Children are never left running, nor as zombies. */
        for (curfew_proc *p = pm->procs; p; p = p->next) {
            if (!p->reaped) {
                kill_child(p);
                int st;
                while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
                    ;
                p->reaped = 1;
            }
        }
    }
    for (curfew_proc *p = pm->procs, *n; p; p = n) {
        n = p->next;
        if (p->ch)
            curfew_channel_free(p->ch);
        if (p->pidfd >= 0)
            close(p->pidfd);
        free_proc(p);
    }
    close(pm->epfd);
    close(pm->wakefd);
    pthread_mutex_destroy(&pm->mu);
    pthread_cond_destroy(&pm->cv);
    free(pm);
}

static procman *get_pm(curfew *cf, int *err)
{
    procman *pm = curfew_ext_get(cf, &pm_key);
    if (pm)
        return pm;
    pm = calloc(1, sizeof(*pm));
    if (!pm) {
        *err = -ENOMEM;
        return NULL;
    }
    pm->cf = cf;
    pthread_mutex_init(&pm->mu, NULL);
    pthread_cond_init(&pm->cv, NULL);
    pm->epfd = epoll_create1(EPOLL_CLOEXEC);
    pm->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pm->twake.kind = T_WAKE;
    *err = pm->epfd < 0 || pm->wakefd < 0 ? -errno : 0;
    if (!*err) {
        epoll_set(pm->epfd, EPOLL_CTL_ADD, pm->wakefd, EPOLLIN, &pm->twake);
        *err = -pthread_create(&pm->thr, NULL, pm_thread, pm);
        pm->started = *err == 0;
    }
    if (!*err)
        *err = curfew_ext_set(cf, &pm_key, pm, pm_free);
    if (*err) {
        procman *other = *err == -EEXIST ? curfew_ext_get(cf, &pm_key) : NULL;
        pm_free(pm);
        if (other)
            *err = 0;
        return other;
    }
    return pm;
}

/* Builds the child's environment: envp (or ours) with our two variables
 * replaced. The strings are owned by the returned block. */
static char **child_env(char *const *envp, int fd, char **block)
{
    if (!envp)
        envp = environ;
    size_t n = 0;
    while (envp[n])
        n++;
    char **out = calloc(n + 3, sizeof(char *));
    char *vars = malloc(128);
    if (!out || !vars) {
        free(out);
        free(vars);
        return NULL;
    }
    int k = snprintf(vars, 64, "%s=%d", CURFEW_CHANNEL_FD_ENV, fd);
    snprintf(vars + k + 1, 127 - (size_t)k, "%s=%ld", CURFEW_PARENT_PID_ENV,
             (long)getpid());
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(envp[i], CURFEW_CHANNEL_FD_ENV "=",
                    sizeof(CURFEW_CHANNEL_FD_ENV)) == 0 ||
            strncmp(envp[i], CURFEW_PARENT_PID_ENV "=",
                    sizeof(CURFEW_PARENT_PID_ENV)) == 0)
            continue;
        out[j++] = envp[i];
    }
    out[j++] = vars;
    out[j++] = vars + k + 1;
    out[j] = NULL;
    *block = vars;
    return out;
}

static int attach_proc(procman *pm, pid_t pid, int fd,
                       const curfew_proc_options *opts, curfew_proc **out,
                       const char *file, int line, const char *func)
{
    curfew_proc_options o = {0};
    if (opts)
        o = *opts;
    curfew_barrier *ph =
        curfew_phase(pm->cf, o.shutdown_phase ? o.shutdown_phase : "children");
    if (!ph)
        return -EINVAL;
    curfew_proc *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->pm = pm;
    p->pid = pid;
    p->opts = o;
    p->name = strdup(o.name ? o.name : "child");
    p->kill_after_ms = o.kill_after_ms ? o.kill_after_ms : DEFAULT_KILL_MS;
    p->tch.kind = T_CHAN;
    p->tch.obj = p;
    p->tpid.kind = T_PID;
    p->tpid.obj = p;
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (p->pidfd >= 0)
        fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
    char bname[256];
    snprintf(bname, sizeof(bname), "child %ld (%s)", (long)pid,
             p->name ? p->name : "child");
    curfew_channel_config cc = {
        .side = CURFEW_SIDE_PARENT, .on_close = chan_closed, .arg = p};
    int r = p->name ? 0 : -ENOMEM;
    if (!r)
        r = curfew_add_blocker_at(ph, bname, pm_trigger, p, &p->blocker, file,
                                  line, func);
    if (!r) {
        r = curfew_channel_create(fd, &cc, &p->ch);
        if (!r) {
            p->chfd = fd;
            r = curfew_actor_create(p->ch, NULL, CTL_KIND, NULL, 0, &ctl_ops, p,
                                    &p->ctl);
        } else {
            close(fd);
        }
        if (r)
            curfew_remove_blocker(p->blocker);
    } else {
        close(fd);
    }
    if (r) {
        if (p->ch)
            curfew_channel_free(p->ch);
        if (p->pidfd >= 0)
            close(p->pidfd);
        free(p->name);
        free(p);
        return r;
    }
    pthread_mutex_lock(&pm->mu);
    epoll_set(pm->epfd, EPOLL_CTL_ADD, p->chfd, chan_events(p->ch), &p->tch);
    if (p->pidfd >= 0)
        epoll_set(pm->epfd, EPOLL_CTL_ADD, p->pidfd, EPOLLIN, &p->tpid);
    p->next = pm->procs;
    pm->procs = p;
    pthread_mutex_unlock(&pm->mu);
    pm_wake(pm);
    *out = p;
    return 0;
}

int curfew_proc_spawn_at(curfew *cf, char *const argv[],
                         const curfew_proc_options *opts, curfew_proc **out,
                         const char *file, int line, const char *func)
{
    if (out)
        *out = NULL;
    if (!cf || !argv || !argv[0] || !out)
        return -EINVAL;
    int err = 0;
    procman *pm = get_pm(cf, &err);
    if (!pm)
        return err;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    char *block = NULL;
    char **envp = child_env(opts ? opts->envp : NULL, sv[1], &block);
    if (!envp) {
        close(sv[0]);
        close(sv[1]);
        return -ENOMEM;
    }
    /* The process thread spawns: PR_SET_PDEATHSIG follows the thread that
     * made the child, and that thread lives as long as the coordinator. */
    spawn_cmd c = {.argv = argv, .envp = envp, .child_fd = sv[1]};
    pthread_mutex_lock(&pm->mu);
    c.next = pm->cmds;
    pm->cmds = &c;
    pm_wake(pm);
    while (!c.done)
        pthread_cond_wait(&pm->cv, &pm->mu);
    pthread_mutex_unlock(&pm->mu);
    close(sv[1]);
    free(envp);
    free(block);
    if (c.err) {
        close(sv[0]);
        return c.err;
    }
    int r = attach_proc(pm, c.pid, sv[0], opts, out, file, line, func);
    if (r) {
        kill(c.pid, SIGKILL);
        while (waitpid(c.pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    return r;
}

int curfew_proc_adopt_at(curfew *cf, pid_t pid, int fd,
                         const curfew_proc_options *opts, curfew_proc **out,
                         const char *file, int line, const char *func)
{
    if (out)
        *out = NULL;
    if (!cf || pid <= 0 || fd < 0 || !out)
        return -EINVAL;
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
        return -ECHILD;
    int err = 0;
    procman *pm = get_pm(cf, &err);
    if (!pm)
        return err;
    return attach_proc(pm, pid, fd, opts, out, file, line, func);
}

int curfew_proc_send(curfew_proc *p, uint32_t type, const void *data,
                     size_t len)
{
    if (!p || type < CURFEW_PROC_MSG_USER || (len && !data))
        return -EINVAL;
    outmsg *m = outmsg_new(type, data, len);
    if (!m)
        return -ENOMEM;
    procman *pm = p->pm;
    pthread_mutex_lock(&pm->mu);
    if (p->reaped || p->finish_received || p->killed) {
        pthread_mutex_unlock(&pm->mu);
        free(m);
        return -EPIPE;
    }
    if (p->out_tail)
        p->out_tail->next = m;
    else
        p->out_head = m;
    p->out_tail = m;
    pm_wake(pm);
    pthread_mutex_unlock(&pm->mu);
    return 0;
}

pid_t curfew_proc_pid(const curfew_proc *p)
{
    return p ? p->pid : -1;
}

int curfew_proc_exited(const curfew_proc *p, int *status)
{
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->pm->mu);
    int r = p->reaped;
    if (r && status)
        *status = p->status;
    pthread_mutex_unlock(&p->pm->mu);
    return r;
}

int curfew_proc_free(curfew_proc *p)
{
    if (!p)
        return -EINVAL;
    procman *pm = p->pm;
    pthread_mutex_lock(&pm->mu);
    if (!p->reaped) {
        pthread_mutex_unlock(&pm->mu);
        return -EBUSY;
    }
    p->freed = 1;
    pm_wake(pm);
    pthread_mutex_unlock(&pm->mu);
    return 0;
}

/* ============================ child ====================================== */

typedef struct childside {
    curfew *cf;
    curfew_child_options opts;
    int finish_index;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int epfd, wakefd;
    tag twake, tch;
    pthread_t thr;
    curfew_channel *ch;
    int chfd;
    curfew_actor *ctl;
    outmsg *out_head, *out_tail;
    uint64_t queued, written;
    uint64_t progress;   /* bytes went out to the parent (mu) */
    size_t last_pending; /* process thread: bytes still to write */
    int closed, stop, no_thread;
    /* Shutdown came, or the orphan's shutdown was claimed: whichever
     * comes first wins (mu). */
    int got_shutdown, orphan_claimed;
    /* Read by the process thread; orphan is set only once the deadline
     * is, so whoever sees it also sees the deadline. */
    _Atomic int orphan, finish_sent;
    _Atomic int64_t orphan_deadline;
    char last_status[CURFEW_STATUS_MAX + 1];
} childside;

static const char child_key;

static void child_msg(curfew_actor *a, uint32_t type, const void *data,
                      size_t len, void *arg)
{
    childside *cs = arg;
    (void)a;
    if (type >= CURFEW_PROC_MSG_USER) {
        if (cs->opts.on_message)
            cs->opts.on_message(type, data, len, cs->opts.arg);
        return;
    }
    if (type == MSG_SHUTDOWN && len == 4) {
        pthread_mutex_lock(&cs->mu);
        int first = !cs->got_shutdown && !cs->orphan_claimed;
        if (first)
            cs->got_shutdown = 1;
        pthread_mutex_unlock(&cs->mu);
        if (!first)
            return;
        const unsigned char *b = data;
        uint32_t budget = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                          (uint32_t)b[2] << 8 | b[3];
        /* P7: the child's watchdog acts within the parent's time. */
        if (budget)
            curfew_set_budget(cs->cf, budget);
        curfew_begin(cs->cf);
    }
}

static void child_ctl_gone(curfew_actor *a, curfew_destroy_reason r, void *arg)
{
    childside *cs = arg;
    (void)a;
    (void)r;
    cs->ctl = NULL;
}

static const curfew_actor_ops child_ctl_ops = {child_msg, NULL, child_ctl_gone};

static int child_created(curfew_channel *ch, curfew_actor *a, curfew_actor *m,
                         uint32_t kind, const void *data, size_t len, void *arg)
{
    childside *cs = arg;
    (void)ch;
    (void)data;
    (void)len;
    if (kind != CTL_KIND || m || cs->ctl)
        return -EPROTO;
    cs->ctl = a;
    return curfew_actor_set_ops(a, &child_ctl_ops, cs);
}

/* P8: the parent is gone without Shutdown. */
static void become_orphan(childside *cs)
{
    /* Called from the process thread (the channel closed) and from the
     * attaching thread (the parent died before attach): once. */
    pthread_mutex_lock(&cs->mu);
    int first = !cs->got_shutdown && !cs->orphan_claimed;
    cs->orphan_claimed = 1;
    pthread_mutex_unlock(&cs->mu);
    if (!first)
        return;
    int32_t b = cs->opts.orphan_budget_ms ? cs->opts.orphan_budget_ms
                                          : DEFAULT_ORPHAN_MS;
    atomic_store(&cs->orphan_deadline, now_ns() + (int64_t)b * 1000000);
    atomic_store(&cs->orphan, 1);
    curfew_set_budget(cs->cf, b);
    curfew_begin(cs->cf);
    wake_fd(cs->wakefd); /* the process thread times the deadline */
}

static void child_closed(curfew_channel *ch, int err, void *arg)
{
    childside *cs = arg;
    (void)ch;
    (void)err;
    pthread_mutex_lock(&cs->mu);
    cs->closed = 1;
    pthread_cond_broadcast(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    become_orphan(cs);
}

/* Queues a message for the parent; returns its sequence number, 0 on
 * failure. */
/* The largest hang report sent up: the channel's default frame limit less
 * room for the frame's own header (A1). */
#define HANG_MAX ((size_t)(16u << 20) - 64)

/* Reads fd to its end into a malloc'd buffer (at most HANG_MAX + 1 bytes,
 * so that a larger report is seen as larger); NULL on error. */
static char *read_report(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap > HANG_MAX)
                break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *len = n;
    return buf;
}

static uint64_t child_queue(childside *cs, uint32_t type, const void *data,
                            size_t len)
{
    outmsg *m = outmsg_new(type, data, len);
    if (!m)
        return 0;
    pthread_mutex_lock(&cs->mu);
    if (cs->closed) {
        pthread_mutex_unlock(&cs->mu);
        free(m);
        return 0;
    }
    if (cs->out_tail)
        cs->out_tail->next = m;
    else
        cs->out_head = m;
    cs->out_tail = m;
    uint64_t seq = ++cs->queued;
    wake_fd(cs->wakefd);
    pthread_mutex_unlock(&cs->mu);
    return seq;
}

/* Waits until message seq is written to the socket (or the channel is
 * gone, or ms passed). */
static void deadline_in(struct timespec *until, int ms)
{
    clock_gettime(CLOCK_REALTIME, until);
    until->tv_sec += ms / 1000;
    until->tv_nsec += (long)(ms % 1000) * 1000000;
    if (until->tv_nsec >= 1000000000) {
        until->tv_sec++;
        until->tv_nsec -= 1000000000;
    }
}

/* Waits until message seq is written, the channel is gone, or nothing
 * went out for ms: a parent that reads slowly still gets every message
 * (P3), one that stopped reading cannot hold the child, and the parent's
 * force-kill timer bounds it all (P4). */
static void child_wait_written(childside *cs, uint64_t seq, int ms)
{
    struct timespec until;
    deadline_in(&until, ms);
    pthread_mutex_lock(&cs->mu);
    uint64_t seen = cs->progress;
    while (cs->written < seq && !cs->closed) {
        int r = pthread_cond_timedwait(&cs->cv, &cs->mu, &until);
        if (cs->progress != seen) {
            seen = cs->progress;
            deadline_in(&until, ms);
        } else if (r == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&cs->mu);
}

static void child_listener(const curfew_event *ev, void *arg)
{
    childside *cs = arg;
    if (ev->type == CURFEW_EV_PHASE_END && ev->phase &&
        strcmp(ev->phase,
               curfew_phase_name(cs->cf, (unsigned)cs->finish_index)) == 0 &&
        !cs->finish_sent && !cs->orphan) {
        cs->finish_sent = 1;
        uint64_t seq = child_queue(cs, MSG_FINISH, NULL, 0);
        if (seq)
            child_wait_written(cs, seq, FLUSH_WAIT_MS);
        if (cs->opts.fast_exit) {
            /* The core rewrites the record after this handler returns,
             * which it never does: write it now, so that the next start
             * reads a clean shutdown (R2; clean when the finish phase is
             * cfg's exit_after or the last phase). */
            curfew_record_write_now(cs->cf);
            _exit(cs->opts.exit_code);
        }
    } else if (ev->type == CURFEW_EV_HANG && !cs->orphan) {
        /* P6: the report goes up before the watchdog acts: the file the
         * watchdog wrote, or else one written here into memory. Whole, at
         * any size the channel carries. */
        int fd = ev->text ? open(ev->text, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0) {
            fd = memfd_create("curfew-hang", MFD_CLOEXEC);
            if (fd >= 0 && (curfew_report_write_hang(cs->cf, fd) < 0 ||
                            lseek(fd, 0, SEEK_SET) != 0)) {
                close(fd);
                fd = -1;
            }
        }
        size_t n = 0;
        char *buf = fd >= 0 ? read_report(fd, &n) : NULL;
        if (fd >= 0)
            close(fd);
        while (buf && n > 0 && buf[n - 1] == '\n')
            n--;
        uint64_t seq = 0;
        if (buf && n > 0 && n <= HANG_MAX) {
            seq = child_queue(cs, MSG_HANG, buf, n);
        } else {
            /* Not silently: the parent's blocker says why no report came. */
            char why[160];
            int k = snprintf(why, sizeof(why),
                             buf ? "hang: the report (%zu bytes) is over the "
                                   "channel's frame limit"
                                 : "hang: the report could not be read",
                             n);
            seq = child_queue(cs, MSG_STATUS, why, (size_t)k);
        }
        free(buf);
        if (seq)
            child_wait_written(cs, seq, FLUSH_WAIT_MS / 2);
    } else if (ev->type == CURFEW_EV_COMPLETE && cs->orphan) {
        _exit(cs->opts.orphan_exit_code);
    }
}

static void *child_thread(void *arg)
{
    childside *cs = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        pthread_mutex_lock(&cs->mu);
        int stop = cs->stop;
        /* Messages wait until the parent's control actor exists: queued
         * right after attach, they must not be lost (P3). */
        outmsg *m = NULL;
        uint64_t upto = cs->written;
        if (cs->ctl || !cs->ch) {
            m = cs->out_head;
            cs->out_head = cs->out_tail = NULL;
            upto = cs->queued;
        }
        pthread_mutex_unlock(&cs->mu);
        if (stop)
            break;
        if (cs->ch) {
            for (; m;) {
                outmsg *n = m->next;
                if (cs->ctl)
                    curfew_actor_send(cs->ctl, m->type, m->data, m->len);
                free(m);
                m = n;
            }
        } else {
            while (m) {
                outmsg *n = m->next;
                free(m);
                m = n;
            }
        }
        int64_t now = now_ns();
        int timeout = -1;
        if (cs->ch) {
            int had_shutdown = cs->got_shutdown;
            /* P5: while shutting down, what we wait for goes up. */
            if (cs->got_shutdown && !cs->finish_sent) {
                char s[CURFEW_STATUS_MAX + 1];
                curfew_pending_summary(cs->cf, s, sizeof(s));
                if (strcmp(s, cs->last_status) != 0 && cs->ctl) {
                    memcpy(cs->last_status, s, sizeof(s));
                    curfew_actor_send(cs->ctl, MSG_STATUS, s, strlen(s));
                }
                timeout = 100;
            }
            if (curfew_channel_dispatch(cs->ch) == 1) {
                epoll_forget(cs->epfd, cs->ch);
                curfew_channel_free(cs->ch);
                cs->ch = NULL;
            } else {
                /* Shutdown came in this dispatch: the first status goes
                 * at once, not at the next wake-up. */
                if (cs->got_shutdown && !had_shutdown)
                    timeout = 0;
                size_t left = curfew_channel_pending_bytes(cs->ch);
                if (left == 0) {
                    pthread_mutex_lock(&cs->mu);
                    if (cs->written < upto)
                        cs->written = upto;
                    cs->progress++;
                    pthread_cond_broadcast(&cs->cv);
                    pthread_mutex_unlock(&cs->mu);
                } else if (left < cs->last_pending) {
                    pthread_mutex_lock(&cs->mu);
                    cs->progress++;
                    pthread_cond_broadcast(&cs->cv);
                    pthread_mutex_unlock(&cs->mu);
                }
                cs->last_pending = left;
                if (curfew_channel_fd(cs->ch) >= 0)
                    epoll_set(cs->epfd, EPOLL_CTL_MOD, cs->chfd,
                              chan_events(cs->ch), &cs->tch);
                int t = curfew_channel_timeout_ms(cs->ch);
                if (t >= 0 && (timeout < 0 || t < timeout))
                    timeout = t;
            }
        }
        if (cs->orphan) {
            int64_t deadline = atomic_load(&cs->orphan_deadline);
            if (now >= deadline)
                _exit(cs->opts.orphan_exit_code);
            int ms = (int)((deadline - now) / 1000000) + 1;
            if (timeout < 0 || ms < timeout)
                timeout = ms;
        }
        struct epoll_event evs[4];
        int n = epoll_wait(cs->epfd, evs, 4, timeout);
        for (int i = 0; i < n; i++)
            if (((tag *)evs[i].data.ptr)->kind == T_WAKE)
                drain_fd(cs->wakefd);
    }
    return NULL;
}

static void child_free(void *arg)
{
    childside *cs = arg;
    if (!cs->no_thread) {
        pthread_mutex_lock(&cs->mu);
        cs->stop = 1;
        pthread_mutex_unlock(&cs->mu);
        wake_fd(cs->wakefd);
        pthread_join(cs->thr, NULL);
    }
    if (cs->ch)
        curfew_channel_free(cs->ch);
    for (outmsg *m = cs->out_head, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    close(cs->epfd);
    close(cs->wakefd);
    pthread_mutex_destroy(&cs->mu);
    pthread_cond_destroy(&cs->cv);
    free(cs);
}

int curfew_child_attach_opts(curfew *cf, const curfew_child_options *opts)
{
    if (!cf)
        return -EINVAL;
    if (curfew_ext_get(cf, &child_key))
        return -EALREADY;
    if (curfew_current_phase(cf))
        return -EBUSY;
    const char *v = getenv(CURFEW_CHANNEL_FD_ENV);
    if (!v || !*v)
        return -ENOENT;
    char *end;
    long fd = strtol(v, &end, 10);
    if (*end || fd < 0 || fd > 1 << 20 || fcntl((int)fd, F_GETFD) < 0)
        return -ENOENT;
    childside *cs = calloc(1, sizeof(*cs));
    if (!cs)
        return -ENOMEM;
    cs->cf = cf;
    if (opts)
        cs->opts = *opts;
    /* Where FinishShutdown goes: the option, else exit_after (the core
     * exits right after that phase's end), else the last phase. */
    unsigned n = curfew_phase_count(cf);
    cs->finish_index = (int)n - 1;
    const char *exit_after = curfew_exit_after(cf);
    for (unsigned i = 0; exit_after && i < n; i++)
        if (strcmp(curfew_phase_name(cf, i), exit_after) == 0)
            cs->finish_index = (int)i;
    if (cs->opts.finish_after) {
        int found = -1;
        for (unsigned i = 0; i < n; i++)
            if (strcmp(curfew_phase_name(cf, i), cs->opts.finish_after) == 0)
                found = (int)i;
        if (found < 0) {
            free(cs);
            return -EINVAL;
        }
        cs->finish_index = found;
    }
    pthread_mutex_init(&cs->mu, NULL);
    pthread_cond_init(&cs->cv, NULL);
    cs->epfd = epoll_create1(EPOLL_CLOEXEC);
    cs->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    cs->twake.kind = T_WAKE;
    cs->tch.kind = T_CHAN;
    cs->chfd = (int)fd;
    curfew_channel_config cc = {.side = CURFEW_SIDE_CHILD,
                                .on_actor_created = child_created,
                                .on_close = child_closed,
                                .arg = cs};
    int r = cs->epfd < 0 || cs->wakefd < 0 ? -errno : 0;
    if (!r)
        r = curfew_channel_create((int)fd, &cc, &cs->ch);
    if (!r)
        r = curfew_listen(cf, child_listener, cs);
    if (!r) {
        epoll_set(cs->epfd, EPOLL_CTL_ADD, cs->wakefd, EPOLLIN, &cs->twake);
        epoll_set(cs->epfd, EPOLL_CTL_ADD, cs->chfd, chan_events(cs->ch),
                  &cs->tch);
        /* Registered before the thread starts: a message it handles may
         * be answered with curfew_child_send() at once. */
        r = curfew_ext_set(cf, &child_key, cs, child_free);
    }
    if (!r) {
        r = -pthread_create(&cs->thr, NULL, child_thread, cs);
        if (r) {
            /* cs belongs to the coordinator now: child_free() releases
             * it at curfew_destroy(), without a thread to join. */
            cs->no_thread = 1;
            return r;
        }
    }
    if (r) {
        if (cs->ch)
            curfew_channel_free(cs->ch);
        if (cs->epfd >= 0)
            close(cs->epfd);
        if (cs->wakefd >= 0)
            close(cs->wakefd);
        free(cs);
        return r;
    }
#ifdef __linux__
    /* Second guard (P8): the parent's death sends SIGTERM. A program that
     * handles it (curfew_signals_install) shuts down; one that does not
     * ends at once. Either way it does not stay running. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    const char *pp = getenv(CURFEW_PARENT_PID_ENV);
    if (pp && strtol(pp, NULL, 10) != (long)getppid()) {
        /* The parent died before the guard was set. */
        pthread_mutex_lock(&cs->mu);
        cs->closed = 1;
        pthread_mutex_unlock(&cs->mu);
        become_orphan(cs);
    }
#endif
    return 0;
}

int curfew_child_attach(curfew *cf)
{
    return curfew_child_attach_opts(cf, NULL);
}

int curfew_child_send(curfew *cf, uint32_t type, const void *data, size_t len)
{
    if (!cf || type < CURFEW_PROC_MSG_USER || (len && !data))
        return -EINVAL;
    childside *cs = curfew_ext_get(cf, &child_key);
    if (!cs)
        return -ENOENT;
    return child_queue(cs, type, data, len) ? 0 : -EPIPE;
}
