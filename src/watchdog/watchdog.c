/* The watchdog (W1-W5): one thread per shutdown, asleep until the next warn
 * or crash deadline of a waiting barrier, that turns a hang into a report.
 *
 * SPDX-License-Identifier: MIT
 *
 * It never waits on a lock user code can hold: wd_lock and rec_lock are
 * curfew's own, and cf->lock is never held while user code runs. The only
 * user code it calls is the hang event. Reports and warnings are written
 * without malloc and without stdio (W4), so a hang inside either cannot
 * silence it.
 */
#define _GNU_SOURCE
#include "core/internal.h"
#include "report/jsonw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define INF INT64_MAX
#define WARN_BATCH 16

static void put(char *buf, size_t cap, size_t *n, const char *s, size_t len)
{
    if (*n + len >= cap)
        len = *n < cap - 1 ? cap - 1 - *n : 0;
    memcpy(buf + *n, s, len);
    *n += len;
    buf[*n] = '\0';
}

static void put_s(char *buf, size_t cap, size_t *n, const char *s)
{
    put(buf, cap, n, s, strlen(s));
}

static void put_i(char *buf, size_t cap, size_t *n, int64_t v)
{
    char d[24];
    put(buf, cap, n, d, curfew__fmt_int(d, v));
}

static void write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t m = write(fd, s, n);
        if (m < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        s += m;
        n -= (size_t)m;
    }
}

/* W2 and D4: the warning reaches stderr from here, so a stuck dispatching
 * thread cannot hide it; the event follows on the dispatching thread. */
static void warn_stderr(curfew *cf, curfew_barrier *b, int64_t waited)
{
    char line[4096];
    size_t n = 0;
    put_s(line, sizeof(line), &n, "curfew: warning: ");
    put_s(line, sizeof(line), &n, cf->process_name ? cf->process_name : "");
    put_s(line, sizeof(line), &n, "[");
    put_i(line, sizeof(line), &n, (int64_t)getpid());
    put_s(line, sizeof(line), &n, "]: barrier \"");
    put_s(line, sizeof(line), &n, b->name);
    put_s(line, sizeof(line), &n, "\" has waited ");
    put_i(line, sizeof(line), &n, waited);
    put_s(line, sizeof(line), &n, " ms for: ");
    n += curfew__pending_list(cf, b, line + n, sizeof(line) - n - 1, ", ", 1);
    line[n++] = '\n';
    write_all(2, line, n);
}

static void emit_hang(curfew *cf, curfew_barrier *b, int64_t elapsed)
{
    if (!cf->on_event && !cf->nlisteners)
        return;
    curfew_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = CURFEW_EV_HANG;
    ev.phase = curfew_current_phase(cf);
    ev.barrier = b->name;
    ev.text = cf->report_path;
    ev.duration_ms = elapsed;
    ev.elapsed_ms = curfew__since_begin_ms(cf);
    curfew__deliver(cf, &ev);
}

/* W3: report, then act. */
static void fire(curfew *cf, curfew_barrier *b, int64_t timeout_ms, int silent)
{
    if (!silent) {
        curfew__report_to_path(cf, cf->report_path, "curfew-hang", b,
                               timeout_ms);
        curfew__record_rewrite(cf);
        pthread_mutex_lock(&cf->lock);
        int64_t elapsed = curfew__since_begin_ms(cf) - b->fired_since;
        pthread_mutex_unlock(&cf->lock);
        emit_hang(cf, b, elapsed);
    }
    switch (cf->on_timeout) {
    case CURFEW_TIMEOUT_EXIT:
        _exit(cf->timeout_exit_code);
    case CURFEW_TIMEOUT_CONTINUE:
        curfew__expire(cf, b);
        curfew__wake(cf);
        break;
    case CURFEW_TIMEOUT_ABORT:
    default:
        abort();
    }
}

/* One look at every waiting barrier: fires what is due, returns the next
 * deadline in ms since begin, or INF. */
static int64_t check(curfew *cf)
{
    int64_t now = curfew__since_begin_ms(cf);
    int64_t budget = INF;
    int64_t budget_ms = atomic_load(&cf->budget_ms);
    if (budget_ms > 0) {
        budget = budget_ms - cf->budget_margin_ms;
        if (budget < 0)
            budget = 0;
    }
    int budget_hit = budget <= now;
    int budget_was = atomic_load(&cf->budget_expired);

    curfew_barrier *warn[WARN_BATCH];
    int64_t warn_waited[WARN_BATCH];
    int nwarn = 0;
    curfew_barrier *due = NULL;
    int due_depth = -1;
    int64_t due_timeout = 0, due_since = 0, next = INF;

    pthread_mutex_lock(&cf->lock);
    for (curfew_barrier *b = cf->barriers; b; b = b->all_next) {
        if (atomic_load(&b->state) != CURFEW_WAITING)
            continue;
        int64_t warn_at =
            b->warn_ms == CURFEW_NEVER ? INF : b->t_start + b->warn_ms;
        int64_t crash_at =
            b->crash_ms == CURFEW_NEVER ? INF : b->t_start + b->crash_ms;
        if (budget < crash_at)
            crash_at = budget;
        if (!b->warned && !b->fired) {
            if (warn_at <= now && warn_at < crash_at) {
                if (nwarn < WARN_BATCH) {
                    b->warned = 1;
                    b->warn_event = 1;
                    warn_waited[nwarn] = now - b->t_start;
                    warn[nwarn++] = b;
                } else {
                    next = now; /* the rest on the next round */
                }
            } else if (warn_at < next && warn_at < crash_at) {
                next = warn_at;
            }
        }
        if (b->fired)
            continue;
        if (crash_at <= now) {
            int d = 0;
            for (curfew_barrier *x = b->outer; x; x = x->outer)
                d++;
            if (d > due_depth) {
                due = b;
                due_depth = d;
                due_timeout = crash_at - b->t_start;
                due_since = b->t_start;
            }
        } else if (crash_at < next) {
            next = crash_at;
        }
    }
    /* W5 holds even when no barrier waits: nobody dispatched since
     * curfew_begin, or the dispatching thread is stuck between phases. The
     * report then names the phase that should be running. */
    if (!due && budget_hit && !budget_was) {
        int cur = atomic_load(&cf->cur_phase);
        curfew_barrier *p = cf->phases[cur < 0 ? 0 : cur];
        if (atomic_load(&p->state) == CURFEW_COMPLETE &&
            (unsigned)cur + 1 < cf->nphases)
            p = cf->phases[cur + 1];
        if (atomic_load(&p->state) != CURFEW_COMPLETE && !p->fired) {
            due = p;
            due_timeout = budget;
            due_since = 0;
        }
    } else if (!budget_hit && budget < next && !atomic_load(&cf->complete)) {
        next = budget;
    }
    if (due) {
        due->fired = 1;
        due->fired_since = due_since;
    }
    pthread_mutex_unlock(&cf->lock);

    for (int i = 0; i < nwarn; i++)
        warn_stderr(cf, warn[i], warn_waited[i]);
    if (nwarn) {
        atomic_store(&cf->warn_events, 1);
        curfew__wake(cf);
    }
    if (due) {
        /* Under CONTINUE the budget, once spent, expires every barrier
         * still to come; one report says so, the rest go quietly. */
        int silent = budget_hit && budget_was;
        if (budget_hit)
            atomic_store(&cf->budget_expired, 1);
        fire(cf, due, due_timeout, silent);
        next = now; /* look again: outer barriers may be due too */
    }
    return next;
}

static void *wd_main(void *arg)
{
    curfew *cf = arg;
    pthread_mutex_lock(&cf->wd_lock);
    while (!cf->wd_stop) {
        cf->wd_kick = 0;
        pthread_mutex_unlock(&cf->wd_lock);
        int64_t next = atomic_load(&cf->complete) ? INF : check(cf);
        pthread_mutex_lock(&cf->wd_lock);
        if (cf->wd_stop || cf->wd_kick)
            continue;
        if (next == INF) {
            pthread_cond_wait(&cf->wd_cond, &cf->wd_lock);
            continue;
        }
        int64_t at = atomic_load(&cf->t0_ns) + next * 1000000 + 999999;
        struct timespec ts = {.tv_sec = at / 1000000000,
                              .tv_nsec = at % 1000000000};
        pthread_cond_timedwait(&cf->wd_cond, &cf->wd_lock, &ts);
    }
    pthread_mutex_unlock(&cf->wd_lock);
    return NULL;
}

void curfew__watchdog_start(curfew *cf)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&cf->wd_started, &expect, 1))
        return;
    int r = pthread_create(&cf->wd_thread, NULL, wd_main, cf);
    if (r != 0) {
        atomic_store(&cf->wd_started, -1);
        char line[256];
        size_t n = 0;
        put_s(line, sizeof(line), &n,
              "curfew: cannot start the watchdog thread (");
        put_s(line, sizeof(line), &n, curfew_strerror(-r));
        put_s(line, sizeof(line), &n, "): hangs will not be reported\n");
        write_all(2, line, n);
    }
}

void curfew__watchdog_kick(curfew *cf)
{
    if (atomic_load(&cf->wd_started) != 1)
        return;
    pthread_mutex_lock(&cf->wd_lock);
    cf->wd_kick = 1;
    pthread_cond_signal(&cf->wd_cond);
    pthread_mutex_unlock(&cf->wd_lock);
}

void curfew__watchdog_stop(curfew *cf)
{
    if (atomic_load(&cf->wd_started) != 1)
        return;
    pthread_mutex_lock(&cf->wd_lock);
    cf->wd_stop = 1;
    pthread_cond_signal(&cf->wd_cond);
    pthread_mutex_unlock(&cf->wd_lock);
    pthread_join(cf->wd_thread, NULL);
    atomic_store(&cf->wd_started, 0);
}
