/* The coordinator: configuration, phases, begin, wake-ups, queries.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#define DEFAULT_WARN_MS 10000
#define DEFAULT_CRASH_MS 60000
#define DEFAULT_MARGIN_MS 500
#define DEFAULT_TIMEOUT_EXIT 70 /* EX_SOFTWARE */

static const char *const default_phases[] = {
    "stop-accepting", "drain",   "children", "persist",
    "telemetry",      "threads", "final"};

int64_t curfew__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int32_t curfew__since_begin_ms(const curfew *cf)
{
    if (atomic_load(&cf->begun) < 2)
        return 0;
    int64_t ms = (curfew__now_ns() - atomic_load(&cf->t0_ns)) / 1000000;
    return ms > INT32_MAX ? INT32_MAX : (int32_t)ms;
}

/* Coalesced as libuv's uv_async_send: only the caller that flips the flag
 * writes the descriptor; the dispatcher clears the flag before it looks at
 * the state, so no wake-up is lost (D3). Async-signal-safe. */
void curfew__wake(curfew *cf)
{
    if (atomic_exchange(&cf->wake_pending, 1))
        return;
    atomic_fetch_add_explicit(&cf->st_wakeups, 1, memory_order_relaxed);
#ifdef __linux__
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(cf->wake_wr, &one, sizeof(one));
    while (r < 0 && errno == EINTR);
#else
    char c = 1;
    ssize_t r;
    do
        r = write(cf->wake_wr, &c, 1);
    while (r < 0 && errno == EINTR);
#endif
    /* EAGAIN: the descriptor is already readable, which is all we want. */
    (void)r;
}

static int check_timeout(int32_t v)
{
    return v >= 0 || v == CURFEW_NEVER;
}

/* A timeout of a phase or barrier after defaults: 0 takes the default. */
static int32_t resolve(int32_t v, int32_t dflt)
{
    return v == 0 ? dflt : v;
}

static int phase_index(const curfew *cf, const char *name)
{
    if (!name)
        return -1;
    for (unsigned i = 0; i < cf->nphases; i++)
        if (strcmp(cf->phases[i]->name, name) == 0)
            return (int)i;
    return -1;
}

/* An optional phase name from the config: NULL takes dflt if that phase
 * exists (custom phase lists need not have it), an unknown name is an
 * error. */
static int named_phase(const curfew *cf, const char *name, const char *dflt,
                       int *out)
{
    if (!name) {
        *out = dflt ? phase_index(cf, dflt) : -1;
        return 0;
    }
    *out = phase_index(cf, name);
    return *out < 0 ? -EINVAL : 0;
}

static char *dup_or_null(const char *s, int *err)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *err = -ENOMEM;
    return d;
}

static curfew_barrier *barrier_new(curfew *cf, const char *name,
                                   int32_t warn_ms, int32_t crash_ms)
{
    curfew_barrier *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->name = strdup(name);
    if (!b->name) {
        free(b);
        return NULL;
    }
    b->cf = cf;
    b->warn_ms = resolve(warn_ms, cf->warn_ms);
    b->crash_ms = resolve(crash_ms, cf->crash_ms);
    atomic_init(&b->state, CURFEW_NOT_STARTED);
    atomic_init(&b->pending, 0);
    b->head = b->tail = b->cursor = CURFEW__NIL;
    return b;
}

static void barrier_link(curfew *cf, curfew_barrier *b)
{
    if (cf->barriers_tail)
        cf->barriers_tail->all_next = b;
    else
        cf->barriers = b;
    cf->barriers_tail = b;
}

static void free_all(curfew *cf)
{
    /* Modules first: their teardown may still use blockers and reports. */
    for (curfew__ext *e = cf->exts, *n; e; e = n) {
        n = e->next;
        if (e->free_fn)
            e->free_fn(e->ptr);
        free(e);
    }
    curfew__free_slots(cf);
    curfew__free_extras(cf);
    for (curfew__notice *x = cf->notices, *n; x; x = n) {
        n = x->next;
        free(x);
    }
    for (curfew_barrier *b = cf->barriers, *n; b; b = n) {
        n = b->all_next;
        free(b->name);
        free(b);
    }
    for (curfew__broken *br = cf->broken, *n; br; br = n) {
        n = br->next;
        free(br->name_copy);
        free(br);
    }
    free(cf->listeners);
    free(cf->phases);
    free(cf->report_path);
    free(cf->record_path);
    free(cf->process_name);
    if (cf->wake_rd >= 0)
        close(cf->wake_rd);
    if (cf->wake_wr >= 0 && cf->wake_wr != cf->wake_rd)
        close(cf->wake_wr);
    pthread_mutex_destroy(&cf->lock);
    pthread_mutex_destroy(&cf->wd_lock);
    pthread_mutex_destroy(&cf->rec_lock);
    pthread_cond_destroy(&cf->wd_cond);
    free(cf);
}

static int open_wake(curfew *cf)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    cf->wake_rd = cf->wake_wr = fd;
#else
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
        fcntl(p[i], F_SETFL, fcntl(p[i], F_GETFL) | O_NONBLOCK);
    }
    cf->wake_rd = p[0];
    cf->wake_wr = p[1];
#endif
    return 0;
}

/* S3: CURFEW_BUDGET_MS, a whole number of milliseconds, is the budget when
 * the program set none: how an orchestrator's grace period reaches the
 * watchdog. Unset, empty or 0: no budget; anything else is ignored with one
 * line on standard error. */
static int64_t env_budget_ms(void)
{
    const char *s = secure_getenv("CURFEW_BUDGET_MS");
    if (!s || !*s)
        return 0;
    int saved = errno;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    int bad = errno || *end || *s < '0' || *s > '9' || v > 1000000000000LL;
    errno = saved;
    if (bad) {
        fprintf(stderr,
                "curfew: CURFEW_BUDGET_MS=\"%s\" ignored: not a whole "
                "number of milliseconds\n",
                s);
        return 0;
    }
    return v;
}

static int configure(curfew *cf, const curfew_config *cfg)
{
    static const curfew_config zero;
    if (!cfg)
        cfg = &zero;
    if (!check_timeout(cfg->warn_after_ms) ||
        !check_timeout(cfg->crash_after_ms) || cfg->budget_ms < 0 ||
        cfg->budget_margin_ms < 0 || (unsigned)cfg->on_timeout > 2u ||
        (cfg->phase_count && !cfg->phases))
        return -EINVAL;

    cf->warn_ms = resolve(cfg->warn_after_ms, DEFAULT_WARN_MS);
    cf->crash_ms = resolve(cfg->crash_after_ms, DEFAULT_CRASH_MS);
    cf->on_timeout = cfg->on_timeout;
    cf->timeout_exit_code =
        cfg->timeout_exit_code ? cfg->timeout_exit_code : DEFAULT_TIMEOUT_EXIT;
    atomic_init(&cf->budget_ms,
                cfg->budget_ms ? cfg->budget_ms : env_budget_ms());
    cf->budget_margin_ms =
        cfg->budget_margin_ms ? cfg->budget_margin_ms : DEFAULT_MARGIN_MS;
    cf->exit_code = cfg->exit_code;
    cf->on_event = cfg->on_event;
    cf->event_arg = cfg->event_arg;
    cf->strict_leaks = cfg->strict_leaks;

    int err = 0;
    cf->report_path = dup_or_null(cfg->report_path, &err);
    cf->record_path = dup_or_null(cfg->record_path, &err);
    cf->process_name = dup_or_null(
        cfg->process_name ? cfg->process_name : program_invocation_short_name,
        &err);
    if (err)
        return err;

    unsigned n =
        cfg->phase_count && cfg->phases
            ? cfg->phase_count
            : (unsigned)(sizeof(default_phases) / sizeof(default_phases[0]));
    if (n > 1024)
        return -EINVAL;
    cf->phases = calloc(n, sizeof(*cf->phases));
    if (!cf->phases)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        curfew_phase_config pc = {.name = default_phases[i < 7 ? i : 0]};
        if (cfg->phase_count && cfg->phases)
            pc = cfg->phases[i];
        if (!pc.name || !*pc.name || !check_timeout(pc.warn_after_ms) ||
            !check_timeout(pc.crash_after_ms))
            return -EINVAL;
        for (unsigned j = 0; j < i; j++)
            if (strcmp(cf->phases[j]->name, pc.name) == 0)
                return -EINVAL;
        curfew_barrier *b =
            barrier_new(cf, pc.name, pc.warn_after_ms, pc.crash_after_ms);
        if (!b)
            return -ENOMEM;
        b->is_phase = 1;
        b->phase_index = i;
        barrier_link(cf, b);
        cf->phases[i] = b;
        cf->nphases = i + 1;
    }

    if (named_phase(cf, cfg->exit_after, NULL, &cf->exit_after) ||
        named_phase(cf, cfg->dynamic_phase, "threads", &cf->dynamic_phase) ||
        named_phase(cf, cfg->static_phase, "final", &cf->static_phase))
        return -EINVAL;
    return 0;
}

int curfew_create(curfew **out, const curfew_config *cfg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    curfew *cf = calloc(1, sizeof(*cf));
    if (!cf)
        return -ENOMEM;
    cf->wake_rd = cf->wake_wr = -1;
    pthread_mutex_init(&cf->lock, NULL);
    pthread_mutex_init(&cf->wd_lock, NULL);
    pthread_mutex_init(&cf->rec_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cf->wd_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&cf->cur_phase, -1);
    atomic_init(&cf->failed, 0);
    atomic_init(&cf->hwm, 0);
    for (unsigned k = 0; k < CURFEW__NCHUNKS; k++)
        atomic_init(&cf->chunks[k], NULL);
    cf->reuse_head = cf->reuse_tail = CURFEW__NIL;
    cf->exit_after = cf->dynamic_phase = cf->static_phase = -1;

    int err = configure(cf, cfg);
    if (!err)
        err = open_wake(cf);
    if (err) {
        free_all(cf);
        return err;
    }
    *out = cf;
    return 0;
}

int curfew_destroy(curfew *cf)
{
    if (!cf)
        return 0;
    if (atomic_load(&cf->begun) && !atomic_load(&cf->complete))
        return -EBUSY;
    curfew__watchdog_stop(cf);
    free_all(cf);
    return 0;
}

curfew_barrier *curfew_phase(curfew *cf, const char *name)
{
    if (!cf)
        return NULL;
    int i = phase_index(cf, name);
    return i < 0 ? NULL : cf->phases[i];
}

unsigned curfew_phase_count(const curfew *cf)
{
    return cf ? cf->nphases : 0;
}

const char *curfew_phase_name(const curfew *cf, unsigned i)
{
    return cf && i < cf->nphases ? cf->phases[i]->name : NULL;
}

const char *curfew_exit_after(const curfew *cf)
{
    return cf && cf->exit_after >= 0 ? cf->phases[cf->exit_after]->name : NULL;
}

/* Only atomics and a write(): both callers share it, one of them in a
 * signal handler. */
static int begin(curfew *cf)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&cf->begun, &expect, 1))
        return -EALREADY;
    atomic_store(&cf->t0_ns, curfew__now_ns());
    atomic_store(&cf->cur_phase, 0);
    atomic_store(&cf->begun, 2);
    curfew__wake(cf);
    return 0;
}

int curfew_begin(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    int r = begin(cf);
    if (r == 0)
        curfew__watchdog_start(cf); /* W1: even if nobody dispatches */
    return r;
}

int curfew_begin_from_signal(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    int saved = errno;
    int r = begin(cf);
    errno = saved;
    return r;
}

int curfew_in_or_beyond(const curfew *cf, const char *phase)
{
    if (!cf)
        return -EINVAL;
    int i = phase_index(cf, phase);
    if (i < 0)
        return -EINVAL;
    return atomic_load(&cf->cur_phase) >= i;
}

const char *curfew_current_phase(const curfew *cf)
{
    if (!cf)
        return NULL;
    int i = atomic_load(&cf->cur_phase);
    return i < 0 ? NULL : cf->phases[i]->name;
}

int curfew_fd(const curfew *cf)
{
    return cf ? cf->wake_rd : -EINVAL;
}

int curfew_timeout_ms(const curfew *cf)
{
    if (!cf)
        return -1;
    /* The descriptor carries every wake-up; 0 only says "dispatch now"
     * when one is already due, for loops that check the timeout first. */
    if (atomic_load(&cf->begun) && !atomic_load(&cf->complete) &&
        atomic_load(&cf->wake_pending))
        return 0;
    return -1;
}

int curfew_is_complete(const curfew *cf)
{
    return cf ? atomic_load(&cf->complete) : 0;
}

int curfew_barrier_create(curfew *cf, const char *name,
                          const curfew_barrier_config *bcfg,
                          curfew_barrier **out)
{
    if (out)
        *out = NULL;
    if (!cf || !out || !name || !*name)
        return -EINVAL;
    curfew_barrier_config c = {0, 0};
    if (bcfg)
        c = *bcfg;
    if (!check_timeout(c.warn_after_ms) || !check_timeout(c.crash_after_ms))
        return -EINVAL;
    curfew_barrier *b =
        barrier_new(cf, name, c.warn_after_ms, c.crash_after_ms);
    if (!b)
        return -ENOMEM;
    pthread_mutex_lock(&cf->lock);
    barrier_link(cf, b);
    pthread_mutex_unlock(&cf->lock);
    *out = b;
    return 0;
}

int curfew_barrier_state(const curfew_barrier *barrier)
{
    return barrier ? atomic_load(&barrier->state) : -EINVAL;
}

const char *curfew_barrier_name(const curfew_barrier *barrier)
{
    return barrier ? barrier->name : NULL;
}

int curfew_barrier_timeouts(const curfew_barrier *barrier, int32_t *warn_ms,
                            int32_t *crash_ms)
{
    if (!barrier)
        return -EINVAL;
    if (warn_ms)
        *warn_ms = barrier->warn_ms;
    if (crash_ms)
        *crash_ms = barrier->crash_ms;
    return 0;
}

int curfew_stats_get(const curfew *cf, curfew_stats *out)
{
    if (!cf || !out)
        return -EINVAL;
    curfew *m = (curfew *)cf;
    out->wakeups = atomic_load(&m->st_wakeups);
    out->dispatches = atomic_load(&m->st_dispatches);
    out->blockers = atomic_load(&m->st_blockers);
    pthread_mutex_lock(&m->lock);
    out->live_slots = atomic_load(&m->hwm) - m->nreuse;
    pthread_mutex_unlock(&m->lock);
    return 0;
}

int curfew_ext_set(curfew *cf, const void *key, void *ptr,
                   void (*free_fn)(void *ptr))
{
    if (!cf || !key)
        return -EINVAL;
    curfew__ext *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->key = key;
    e->ptr = ptr;
    e->free_fn = free_fn;
    pthread_mutex_lock(&cf->lock);
    for (curfew__ext *x = cf->exts; x; x = x->next) {
        if (x->key == key) {
            pthread_mutex_unlock(&cf->lock);
            free(e);
            return -EEXIST;
        }
    }
    e->next = cf->exts;
    cf->exts = e;
    pthread_mutex_unlock(&cf->lock);
    return 0;
}

void *curfew_ext_get(curfew *cf, const void *key)
{
    if (!cf)
        return NULL;
    void *p = NULL;
    pthread_mutex_lock(&cf->lock);
    for (curfew__ext *x = cf->exts; x; x = x->next)
        if (x->key == key)
            p = x->ptr;
    pthread_mutex_unlock(&cf->lock);
    return p;
}

int curfew_notice(curfew *cf, const curfew_barrier *barrier, const char *text)
{
    if (!cf || !text)
        return -EINVAL;
    size_t n = strlen(text);
    curfew__notice *x = malloc(sizeof(*x) + n + 1);
    if (!x)
        return -ENOMEM;
    x->next = NULL;
    x->barrier = barrier;
    memcpy(x->text, text, n + 1);
    pthread_mutex_lock(&cf->lock);
    if (cf->notices_tail)
        cf->notices_tail->next = x;
    else
        cf->notices = x;
    cf->notices_tail = x;
    pthread_mutex_unlock(&cf->lock);
    if (atomic_load(&cf->begun))
        curfew__wake(cf);
    return 0;
}

int curfew_lifetime_settings(const curfew *cf, const char **dynamic_phase,
                             const char **static_phase, int *strict_leaks)
{
    if (!cf)
        return -EINVAL;
    if (dynamic_phase)
        *dynamic_phase =
            cf->dynamic_phase >= 0 ? cf->phases[cf->dynamic_phase]->name : NULL;
    if (static_phase)
        *static_phase =
            cf->static_phase >= 0 ? cf->phases[cf->static_phase]->name : NULL;
    if (strict_leaks)
        *strict_leaks = cf->strict_leaks;
    return 0;
}

int curfew_listen(curfew *cf, curfew_event_fn fn, void *arg)
{
    if (!cf || !fn)
        return -EINVAL;
    pthread_mutex_lock(&cf->lock);
    if (atomic_load(&cf->begun)) {
        pthread_mutex_unlock(&cf->lock);
        return -EBUSY;
    }
    pthread_mutex_unlock(&cf->lock);
    /* Before begin only threads of the program touch the list, and the
     * dispatcher reads it only after begin: grown outside the lock. */
    struct curfew__listener *l =
        realloc(cf->listeners, (cf->nlisteners + 1) * sizeof(*l));
    if (!l)
        return -ENOMEM;
    l[cf->nlisteners].fn = fn;
    l[cf->nlisteners].arg = arg;
    pthread_mutex_lock(&cf->lock);
    cf->listeners = l;
    cf->nlisteners++;
    pthread_mutex_unlock(&cf->lock);
    return 0;
}

void curfew__deliver(curfew *cf, const curfew_event *ev)
{
    if (cf->on_event)
        cf->on_event(ev, cf->event_arg);
    for (unsigned i = 0; i < cf->nlisteners; i++)
        cf->listeners[i].fn(ev, cf->listeners[i].arg);
}

int curfew_set_budget(curfew *cf, int64_t budget_ms)
{
    if (!cf || budget_ms < 0)
        return -EINVAL;
    if (atomic_load(&cf->begun))
        return -EALREADY;
    atomic_store(&cf->budget_ms, budget_ms);
    return 0;
}

int64_t curfew_budget_left_ms(const curfew *cf)
{
    if (!cf)
        return -1;
    int64_t b = atomic_load(&cf->budget_ms);
    if (b <= 0)
        return -1;
    int64_t left = b - curfew__since_begin_ms(cf);
    return left < 0 ? 0 : left;
}
