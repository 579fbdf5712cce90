/* Workers (contract section K). Written against the public core API, as
 * any user of curfew would be.
 *
 * SPDX-License-Identifier: MIT
 *
 * One mutex per worker guards its queue, its references and its state
 * changes; the state is also an atomic so any thread can read it without
 * the lock (K1). User code (tasks, weak-reference callbacks, on_killing)
 * always runs on the worker's thread with the mutex released.
 */
#define _GNU_SOURCE
#include <curfew/worker.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct task {
    struct task *next;
    curfew_task_fn fn;
    void *arg;
    curfew_task_behavior behavior;
} task;

struct curfew_worker_ref {
    curfew_worker *w;
    struct curfew_worker_ref *prev, *next;
    char *name;
    const char *file, *func;
    int line;
    int strong;
    int told;
    void (*on_canceling)(curfew_worker_ref *ref, void *arg);
    void *arg;
};

struct curfew_worker {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* the worker waits here */
    pthread_cond_t done_cv;     /* joiners wait here */
    curfew_worker_ref *telling; /* weak ref whose on_canceling runs now */
    pthread_t thread;
    int started, joined, finished;
    _Atomic int state;
    char *name;
    task *head, *tail;
    curfew_worker_ref *refs;
    uint32_t nstrong, nweak;
    uint64_t tasks_run, tasks_skipped;
    void (*on_killing)(curfew_worker *w, void *arg);
    void *arg;
    int attached;
    curfew_blocker blocker;
};

/* Only forward (K1). Caller holds w->mu. */
static void set_state(curfew_worker *w, int st)
{
    if (st > atomic_load(&w->state))
        atomic_store(&w->state, st);
}

/* Caller holds w->mu. Tasks that may be skipped and have not started go
 * now, counted (K3); the worker is woken to tell weak references. */
static void enter_canceling(curfew_worker *w)
{
    set_state(w, CURFEW_WORKER_CANCELING);
    task **pp = &w->head, *last = NULL;
    while (*pp) {
        task *t = *pp;
        if (t->behavior == CURFEW_TASK_SKIP_ON_SHUTDOWN) {
            *pp = t->next;
            free(t);
            w->tasks_skipped++;
        } else {
            last = t;
            pp = &t->next;
        }
    }
    w->tail = last;
    pthread_cond_broadcast(&w->cv);
}

static size_t describe_locked(const curfew_worker *w, char *buf, size_t size)
{
    size_t n = 0;
    if (size)
        buf[0] = '\0';
    for (const curfew_worker_ref *r = w->refs; r && size; r = r->next) {
        if (!r->strong)
            continue;
        int k = snprintf(buf + n, size - n, "%s%s (%s:%d in %s)", n ? ", " : "",
                         r->name, r->file, r->line, r->func);
        if (k < 0)
            break;
        n += (size_t)k;
        if (n >= size) {
            n = size - 1;
            break;
        }
    }
    return n;
}

/* K5: while CANCELING waits for strong references, the worker's blocker
 * says which, so hang reports name them. Called with w->mu held, so a late
 * update can never overwrite the final status (lock order: w->mu, then the
 * coordinator's own lock, which never calls out). */
static void update_status_locked(curfew_worker *w)
{
    if (!w->attached || atomic_load(&w->state) != CURFEW_WORKER_CANCELING)
        return;
    if (w->nstrong == 0) {
        curfew_blocker_status(w->blocker, "canceling: finishing tasks");
        return;
    }
    char refs[CURFEW_STATUS_MAX + 1];
    describe_locked(w, refs, sizeof(refs));
    curfew_blocker_status(w->blocker,
                          "canceling: waiting for %u strong reference%s: %s",
                          w->nstrong, w->nstrong == 1 ? "" : "s", refs);
}

static void *worker_main(void *arg)
{
    curfew_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    set_state(w, CURFEW_WORKER_RUNNING);
    for (;;) {
        int st = atomic_load(&w->state);
        if (st == CURFEW_WORKER_CANCELING) {
            /* Weak references are told first, one at a time, without the
             * lock: a callback may release its reference. */
            curfew_worker_ref *r = w->refs;
            while (r && (r->strong || r->told))
                r = r->next;
            if (r) {
                r->told = 1;
                void (*cb)(curfew_worker_ref *, void *) = r->on_canceling;
                void *cb_arg = r->arg;
                w->telling = r;
                pthread_mutex_unlock(&w->mu);
                if (cb)
                    cb(r, cb_arg);
                pthread_mutex_lock(&w->mu);
                w->telling = NULL;
                pthread_cond_broadcast(&w->done_cv);
                continue;
            }
        }
        if (w->head) {
            task *t = w->head;
            w->head = t->next;
            if (!w->head)
                w->tail = NULL;
            pthread_mutex_unlock(&w->mu);
            t->fn(w, t->arg);
            free(t);
            pthread_mutex_lock(&w->mu);
            w->tasks_run++;
            continue;
        }
        if (st == CURFEW_WORKER_CLOSING) {
            enter_canceling(w);
            update_status_locked(w);
            continue;
        }
        if (st == CURFEW_WORKER_CANCELING && w->nstrong == 0)
            break;
        pthread_cond_wait(&w->cv, &w->mu);
    }
    set_state(w, CURFEW_WORKER_KILLING);
    if (w->attached)
        curfew_blocker_status(w->blocker, "killing: in on_killing");
    pthread_mutex_unlock(&w->mu);

    /* K4: exactly once, on this thread, nothing else runs any more. */
    if (w->on_killing)
        w->on_killing(w, w->arg);

    pthread_mutex_lock(&w->mu);
    set_state(w, CURFEW_WORKER_DEAD);
    if (w->attached) {
        /* The blocker finishes at DEAD, never before (K4). */
        char text[128];
        snprintf(text, sizeof(text), "dead: %llu tasks ran, %llu skipped",
                 (unsigned long long)w->tasks_run,
                 (unsigned long long)w->tasks_skipped);
        curfew_blocker_status(w->blocker, "%s", text);
        curfew_blocker_done(w->blocker);
    }
    w->finished = 1;
    pthread_cond_broadcast(&w->done_cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int phase_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    curfew_worker_cancel(arg);
    return CURFEW_PENDING;
}

static void worker_free_mem(curfew_worker *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->done_cv);
    free(w->name);
    free(w);
}

int curfew_worker_start_at(const curfew_worker_config *cfg, curfew_worker **out,
                           const char *file, int line, const char *func)
{
    if (out)
        *out = NULL;
    if (!cfg || !out)
        return -EINVAL;
    curfew_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->name = strdup(cfg->name ? cfg->name : "worker");
    if (!w->name) {
        free(w);
        return -ENOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&w->state, CURFEW_WORKER_PENDING);
    w->on_killing = cfg->on_killing;
    w->arg = cfg->arg;
    if (cfg->cf) {
        curfew_barrier *ph =
            curfew_phase(cfg->cf, cfg->phase ? cfg->phase : "threads");
        if (!ph) {
            worker_free_mem(w);
            return -EINVAL;
        }
        int r = curfew_add_blocker_at(ph, w->name, phase_trigger, w,
                                      &w->blocker, file, line, func);
        if (r) {
            worker_free_mem(w);
            return r;
        }
        w->attached = 1;
    }
    int r = pthread_create(&w->thread, NULL, worker_main, w);
    if (r) {
        if (w->attached)
            curfew_remove_blocker(w->blocker);
        worker_free_mem(w);
        return -r;
    }
    w->started = 1;
    *out = w;
    return 0;
}

int curfew_worker_post(curfew_worker *w, curfew_task_behavior behavior,
                       curfew_task_fn fn, void *arg)
{
    if (!w || !fn || (unsigned)behavior > 1u)
        return -EINVAL;
    task *t = malloc(sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    t->behavior = behavior;
    pthread_mutex_lock(&w->mu);
    if (atomic_load(&w->state) >= CURFEW_WORKER_CLOSING) {
        pthread_mutex_unlock(&w->mu);
        free(t);
        return -ESHUTDOWN;
    }
    if (w->tail)
        w->tail->next = t;
    else
        w->head = t;
    w->tail = t;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

int curfew_worker_close(curfew_worker *w)
{
    if (!w)
        return -EINVAL;
    pthread_mutex_lock(&w->mu);
    int r = -EALREADY;
    if (atomic_load(&w->state) < CURFEW_WORKER_CLOSING) {
        set_state(w, CURFEW_WORKER_CLOSING);
        pthread_cond_broadcast(&w->cv);
        r = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return r;
}

int curfew_worker_cancel(curfew_worker *w)
{
    if (!w)
        return -EINVAL;
    pthread_mutex_lock(&w->mu);
    int r = -EALREADY;
    if (atomic_load(&w->state) < CURFEW_WORKER_CANCELING) {
        enter_canceling(w);
        update_status_locked(w);
        r = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return r;
}

int curfew_worker_state(const curfew_worker *w)
{
    return w ? atomic_load(&w->state) : -EINVAL;
}

int curfew_worker_join(curfew_worker *w, int32_t timeout_ms)
{
    if (!w || (timeout_ms < 0 && timeout_ms != CURFEW_NEVER))
        return -EINVAL;
    if (pthread_equal(pthread_self(), w->thread))
        return -EDEADLK;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&w->mu);
    while (!w->finished) {
        if (timeout_ms == CURFEW_NEVER) {
            pthread_cond_wait(&w->done_cv, &w->mu);
        } else if (pthread_cond_timedwait(&w->done_cv, &w->mu, &until) ==
                   ETIMEDOUT) {
            if (!w->finished) {
                pthread_mutex_unlock(&w->mu);
                return -ETIMEDOUT;
            }
        }
    }
    int join = !w->joined;
    w->joined = 1;
    pthread_mutex_unlock(&w->mu);
    if (join)
        pthread_join(w->thread, NULL);
    return 0;
}

int curfew_worker_free(curfew_worker *w)
{
    if (!w)
        return -EINVAL;
    pthread_mutex_lock(&w->mu);
    int busy = !w->finished || w->refs != NULL;
    pthread_mutex_unlock(&w->mu);
    if (busy)
        return -EBUSY;
    int r = curfew_worker_join(w, CURFEW_NEVER);
    if (r)
        return r;
    task *t = w->head;
    while (t) {
        task *n = t->next;
        free(t);
        t = n;
    }
    worker_free_mem(w);
    return 0;
}

int curfew_worker_stats_get(const curfew_worker *w, curfew_worker_stats *out)
{
    if (!w || !out)
        return -EINVAL;
    curfew_worker *m = (curfew_worker *)w;
    pthread_mutex_lock(&m->mu);
    out->tasks_run = m->tasks_run;
    out->tasks_skipped = m->tasks_skipped;
    out->strong_refs = m->nstrong;
    out->weak_refs = m->nweak;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int take_ref(curfew_worker *w, const char *name, int strong,
                    void (*cb)(curfew_worker_ref *, void *), void *arg,
                    curfew_worker_ref **out, const char *file, int line,
                    const char *func)
{
    if (out)
        *out = NULL;
    if (!w || !name || !out)
        return -EINVAL;
    curfew_worker_ref *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->name = strdup(name);
    if (!r->name) {
        free(r);
        return -ENOMEM;
    }
    r->w = w;
    r->strong = strong;
    r->on_canceling = cb;
    r->arg = arg;
    r->file = file ? file : "?";
    r->line = line;
    r->func = func ? func : "?";
    pthread_mutex_lock(&w->mu);
    if (atomic_load(&w->state) >= CURFEW_WORKER_CANCELING) {
        pthread_mutex_unlock(&w->mu);
        free(r->name);
        free(r);
        return -ESHUTDOWN;
    }
    r->next = w->refs;
    if (w->refs)
        w->refs->prev = r;
    w->refs = r;
    if (strong)
        w->nstrong++;
    else
        w->nweak++;
    pthread_mutex_unlock(&w->mu);
    *out = r;
    return 0;
}

int curfew_worker_ref_strong_at(curfew_worker *w, const char *name,
                                curfew_worker_ref **out, const char *file,
                                int line, const char *func)
{
    return take_ref(w, name, 1, NULL, NULL, out, file, line, func);
}

int curfew_worker_ref_weak_at(curfew_worker *w, const char *name,
                              void (*on_canceling)(curfew_worker_ref *ref,
                                                   void *arg),
                              void *arg, curfew_worker_ref **out,
                              const char *file, int line, const char *func)
{
    return take_ref(w, name, 0, on_canceling, arg, out, file, line, func);
}

int curfew_worker_ref_release(curfew_worker_ref *r)
{
    if (!r)
        return -EINVAL;
    curfew_worker *w = r->w;
    pthread_mutex_lock(&w->mu);
    if (w->telling == r) {
        if (pthread_equal(pthread_self(), w->thread))
            w->telling = NULL; /* from its own callback */
        else
            while (w->telling == r)
                pthread_cond_wait(&w->done_cv, &w->mu);
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        w->refs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->strong) {
        if (--w->nstrong == 0)
            pthread_cond_broadcast(&w->cv);
        update_status_locked(w);
    } else {
        w->nweak--;
    }
    /* Not a word about w after this: the worker may be freed at once. */
    pthread_mutex_unlock(&w->mu);
    free(r->name);
    free(r);
    return 0;
}

curfew_worker *curfew_worker_ref_worker(const curfew_worker_ref *ref)
{
    return ref ? ref->w : NULL;
}

int curfew_worker_describe_refs(const curfew_worker *w, char *buf, size_t size)
{
    if (!w)
        return -EINVAL;
    curfew_worker *m = (curfew_worker *)w;
    pthread_mutex_lock(&m->mu);
    if (buf && size)
        describe_locked(m, buf, size);
    int n = (int)m->nstrong;
    pthread_mutex_unlock(&m->mu);
    return n;
}
