/* Dispatch: starting barriers, running triggers, completing barriers and
 * phases, events; nested barriers.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void emit(curfew *cf, curfew_event_type type, const curfew_barrier *b,
                 const char *blocker, int error, const char *text,
                 int64_t duration_ms)
{
    if (!cf->on_event && !cf->nlisteners)
        return;
    curfew_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    if (b) {
        /* The phase the barrier belongs to, through its outer barriers;
         * NULL for a barrier that waits in no phase. */
        pthread_mutex_lock(&cf->lock);
        const curfew_barrier *x = b;
        while (x && !x->is_phase)
            x = x->outer;
        pthread_mutex_unlock(&cf->lock);
        ev.phase = x ? x->name : NULL;
    } else {
        ev.phase = curfew_current_phase(cf);
    }
    ev.barrier = b ? b->name : NULL;
    ev.blocker = blocker;
    ev.error = error;
    ev.text = text;
    ev.duration_ms = duration_ms;
    ev.elapsed_ms = curfew__since_begin_ms(cf);
    curfew__deliver(cf, &ev);
}

/* Reports failures in the order they happened (the stack is LIFO). */
static int report_failures(curfew *cf)
{
    uint64_t head = atomic_exchange(&cf->failed, 0);
    if (!head)
        return 0;
    uint32_t rev = CURFEW__NIL;
    for (uint32_t i = (uint32_t)(head - 1); i != CURFEW__NIL;) {
        curfew__slot *s = curfew__slot_at(cf, i);
        uint32_t next = s->link;
        s->link = rev;
        rev = i;
        i = next;
    }
    for (uint32_t i = rev; i != CURFEW__NIL;) {
        curfew__slot *s = curfew__slot_at(cf, i);
        uint32_t next = s->link;
        emit(cf, CURFEW_EV_BLOCKER_FAILED, curfew__hot_at(cf, i)->barrier,
             curfew__slot_name(s), atomic_load(&s->err), atomic_load(&s->what),
             0);
        i = next;
    }
    return 1;
}

static void start_barrier(curfew *cf, curfew_barrier *b)
{
    pthread_mutex_lock(&cf->lock);
    b->t_start = curfew__since_begin_ms(cf);
    atomic_store(&b->state, CURFEW_WAITING);
    b->needs_trigger = 1;
    pthread_mutex_unlock(&cf->lock);
    b->wnext = NULL;
    if (cf->wtail)
        cf->wtail->wnext = b;
    else
        cf->whead = b;
    cf->wtail = b;
    curfew__watchdog_kick(cf);
    if (b->is_phase) {
        /* R2: rewritten at every phase change, the new phase running. */
        curfew__record_rewrite(cf);
        emit(cf, CURFEW_EV_PHASE_BEGIN, b, NULL, 0, NULL, 0);
    }
}

int curfew__nested_trigger(curfew_blocker self, void *arg)
{
    curfew_barrier *inner = arg;
    /* The id is known for sure only here: wait_in's caller may not have
     * stored it yet when the outer barrier is already waiting. */
    pthread_mutex_lock(&inner->cf->lock);
    inner->outer_id = self.id;
    pthread_mutex_unlock(&inner->cf->lock);
    start_barrier(inner->cf, inner);
    return CURFEW_PENDING;
}

static void run_trigger(curfew *cf, uint32_t idx)
{
    curfew__slot *s = curfew__slot_at(cf, idx);
    curfew__hot *h = curfew__hot_at(cf, idx);
    uint64_t ctl = atomic_load(&h->ctl);
    if (curfew__state_of(ctl) != CURFEW__S_IDLE)
        return;
    uint64_t gen = ctl >> 32;
    /* A done that wins the race finishes the blocker before its trigger:
     * the trigger is then never called (B4). */
    if (!atomic_compare_exchange_strong(&h->ctl, &ctl,
                                        gen << 32 | CURFEW__S_PENDING))
        return;
    atomic_store_explicit(&s->t_start, curfew__since_begin_ms(cf),
                          memory_order_relaxed);
    if (!s->trigger)
        return;
    uint64_t id = gen << 32 | idx;
    int r = s->trigger((curfew_blocker){cf, id}, s->arg);
    if (r == CURFEW_DONE)
        curfew__finish(cf, id, CURFEW__S_DONE, 0, NULL);
    else if (r < 0)
        curfew__finish(cf, id, CURFEW__S_FAILED, r, "trigger failed");
    else if (r != CURFEW_PENDING)
        curfew__finish(cf, id, CURFEW__S_FAILED, -EINVAL,
                       "trigger returned an invalid value");
}

/* Triggers the blockers added since the last pass. Only the dispatcher
 * walks the list, and after begin no slot is unlinked, so the links up to
 * the tail seen under the lock stay valid without it. */
static int trigger_new(curfew *cf, curfew_barrier *b)
{
    pthread_mutex_lock(&cf->lock);
    if (!b->needs_trigger) {
        pthread_mutex_unlock(&cf->lock);
        return 0;
    }
    b->needs_trigger = 0;
    uint32_t first = b->cursor == CURFEW__NIL
                         ? b->head
                         : curfew__slot_at(cf, b->cursor)->next;
    uint32_t last = b->tail;
    pthread_mutex_unlock(&cf->lock);
    if (first == CURFEW__NIL)
        return 0;
    for (uint32_t i = first;; i = curfew__slot_at(cf, i)->next) {
        run_trigger(cf, i);
        b->cursor = i;
        if (i == last)
            break;
    }
    return 1;
}

static void fast_exit(curfew *cf)
{
    /* The release-build path (C5): no destructors, no atexit handlers,
     * no flushing of other threads' buffers. */
    _exit(cf->exit_code);
}

static void complete_barrier(curfew *cf, curfew_barrier *b)
{
    if (b->outer) {
        curfew__finish(cf, b->outer_id, CURFEW__S_DONE, 0, NULL);
        return;
    }
    if (!b->is_phase)
        return;
    emit(cf, CURFEW_EV_PHASE_END, b, NULL, 0, NULL, b->t_end - b->t_start);
    if ((int)b->phase_index == cf->exit_after) {
        curfew__record_rewrite(cf); /* clean: its last phase completed */
        fast_exit(cf);
    }
    unsigned next = b->phase_index + 1;
    if (next < cf->nphases) {
        atomic_store(&cf->cur_phase, (int)next);
        start_barrier(cf, cf->phases[next]);
    } else {
        atomic_store(&cf->complete, 1);
        curfew__record_rewrite(cf);
        curfew__watchdog_kick(cf);
        emit(cf, CURFEW_EV_COMPLETE, NULL, NULL, 0, NULL,
             curfew__since_begin_ms(cf));
    }
}

static int try_complete(curfew *cf, curfew_barrier *b)
{
    if (atomic_load(&b->state) != CURFEW_WAITING ||
        atomic_load(&b->pending) != 0)
        return 0;
    /* Failures of this barrier's blockers are reported before it ends. */
    report_failures(cf);
    pthread_mutex_lock(&cf->lock);
    int done = atomic_load(&b->pending) == 0 && !b->needs_trigger;
    if (done) {
        b->t_end = curfew__since_begin_ms(cf);
        atomic_store(&b->state, CURFEW_COMPLETE);
    }
    pthread_mutex_unlock(&cf->lock);
    if (done)
        complete_barrier(cf, b);
    return done;
}

/* W2: the watchdog flagged barriers; their warning events are emitted
 * here, on the dispatching thread (D4). */
static int report_warnings(curfew *cf)
{
    if (!atomic_exchange(&cf->warn_events, 0))
        return 0;
    for (;;) {
        curfew_barrier *w = NULL;
        pthread_mutex_lock(&cf->lock);
        for (curfew_barrier *b = cf->barriers; b && !w; b = b->all_next)
            if (b->warn_event)
                w = b;
        if (w)
            w->warn_event = 0;
        pthread_mutex_unlock(&cf->lock);
        if (!w)
            return 1;
        /* Completed since the watchdog looked: its end was reported, a
         * warning now would come after it. */
        if (atomic_load(&w->state) != CURFEW_WAITING)
            continue;
        char *text = malloc(65536);
        if (text)
            curfew__pending_list(cf, w, text, 65536, "\n", 0);
        emit(cf, CURFEW_EV_WARNING, w, NULL, 0, text ? text : "(out of memory)",
             0);
        free(text);
    }
}

static int report_notices(curfew *cf)
{
    pthread_mutex_lock(&cf->lock);
    curfew__notice *x = cf->notices;
    cf->notices = cf->notices_tail = NULL;
    pthread_mutex_unlock(&cf->lock);
    if (!x)
        return 0;
    while (x) {
        curfew__notice *n = x->next;
        emit(cf, CURFEW_EV_NOTICE, x->barrier, NULL, 0, x->text, 0);
        free(x);
        x = n;
    }
    return 1;
}

static int pass(curfew *cf)
{
    int progress = report_failures(cf);
    progress |= report_warnings(cf);
    progress |= report_notices(cf);
    for (curfew_barrier *b = cf->whead; b; b = b->wnext) {
        if (atomic_load(&b->state) != CURFEW_WAITING)
            continue;
        progress |= trigger_new(cf, b);
        progress |= try_complete(cf, b);
    }
    /* Drop completed barriers; the pass may have appended new ones. */
    curfew_barrier **pp = &cf->whead, *last = NULL;
    while (*pp) {
        if (atomic_load(&(*pp)->state) == CURFEW_COMPLETE) {
            *pp = (*pp)->wnext;
        } else {
            last = *pp;
            pp = &(*pp)->wnext;
        }
    }
    cf->wtail = last;
    return progress;
}

static void drain_wake(curfew *cf)
{
    atomic_store(&cf->wake_pending, 0);
    char buf[64];
    while (read(cf->wake_rd, buf, sizeof(buf)) > 0)
        ;
}

static int dispatch(curfew *cf)
{
    if (atomic_load(&cf->begun) < 2)
        return 0;
    if (atomic_load(&cf->complete))
        return 1;
    drain_wake(cf);
    atomic_fetch_add_explicit(&cf->st_dispatches, 1, memory_order_relaxed);
    if (!cf->began_reported) {
        cf->began_reported = 1;
        /* Begun from a signal handler, which cannot start threads. */
        curfew__watchdog_start(cf);
        emit(cf, CURFEW_EV_BEGIN, NULL, NULL, 0, NULL, 0);
        start_barrier(cf, cf->phases[0]);
    }
    while (pass(cf) && !atomic_load(&cf->complete))
        ;
    return atomic_load(&cf->complete);
}

int curfew_dispatch(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    /* One dispatcher at a time, and none from inside a callback: both
     * would otherwise race on the dispatcher's private state (D5). */
    int expect = 0;
    if (!atomic_compare_exchange_strong(&cf->dispatching, &expect, 1))
        return -EPERM;
    int r = dispatch(cf);
    atomic_store(&cf->dispatching, 0);
    return r;
}

int curfew_run(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    for (;;) {
        int r = curfew_dispatch(cf);
        if (r < 0)
            return r;
        if (r == 1)
            return 0;
        struct pollfd p = {.fd = cf->wake_rd, .events = POLLIN};
        if (poll(&p, 1, curfew_timeout_ms(cf)) < 0 && errno != EINTR)
            return -errno;
    }
}

/* Is b, or a barrier b waits in, the barrier x? cf->lock held. */
static int waits_in(const curfew_barrier *b, const curfew_barrier *x)
{
    for (; b; b = b->outer)
        if (b == x)
            return 1;
    return 0;
}

int curfew_barrier_wait_in_at(curfew_barrier *inner, curfew_barrier *outer,
                              const char *name, const char *file, int line,
                              const char *func)
{
    if (!outer)
        return -EINVAL;
    curfew *cf = outer->cf;
    int err = 0;
    if (!inner || !name || !*name || inner == outer || inner->is_phase ||
        inner->cf != cf)
        err = -EINVAL;
    if (!err) {
        pthread_mutex_lock(&cf->lock);
        if (waits_in(outer, inner))
            err = -ELOOP;
        else if (inner->outer)
            err = -EALREADY;
        else if (atomic_load(&outer->state) == CURFEW_COMPLETE)
            err = -ESHUTDOWN;
        else
            inner->outer = outer; /* reserved; undone if the add fails */
        pthread_mutex_unlock(&cf->lock);
    }
    if (err) {
        curfew__broken_add(cf, name, err, outer, file, line, func);
        return err;
    }
    err = curfew__add(outer, name, curfew__nested_trigger, inner, NULL, file,
                      line, func);
    if (err) {
        pthread_mutex_lock(&cf->lock);
        inner->outer = NULL;
        pthread_mutex_unlock(&cf->lock);
    }
    return err;
}
