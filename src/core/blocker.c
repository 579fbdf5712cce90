/* Blockers: slot storage, add, finish, status, results.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

_Static_assert(sizeof(curfew__hot) == 16, "four hot halves per cache line");
_Static_assert(sizeof(curfew__slot) <= 72, "the cold half grew");

/* Slots finished before the shutdown began are reused, oldest first, once
 * more than this many wait: a second done on a fresh handle still answers
 * -EALREADY, and a program that adds and finishes blockers all day long
 * keeps a bounded number of slots. After curfew_begin nothing is reused, so
 * the record can list every blocker of the shutdown. */
#define REUSE_AFTER 64u

/* Chunks this large or larger get a mapping of their own, aligned for
 * transparent huge pages. */
#define HUGE_CHUNK ((size_t)2 << 20)

static unsigned chunk_of(uint32_t idx, uint32_t *off)
{
    uint64_t q = (uint64_t)idx / CURFEW__CHUNK0 + 1;
    unsigned k = 63u - (unsigned)__builtin_clzll(q);
    *off = idx - (uint32_t)(CURFEW__CHUNK0 * ((1ull << k) - 1));
    return k;
}

static size_t chunk_slots(unsigned k)
{
    return (size_t)CURFEW__CHUNK0 << k;
}

static size_t chunk_bytes(unsigned k)
{
    return chunk_slots(k) * (sizeof(curfew__hot) + sizeof(curfew__slot));
}

static unsigned char *chunk_alloc(unsigned k)
{
    size_t len = chunk_bytes(k);
    if (len < HUGE_CHUNK)
        return malloc(len);
    /* Map one huge page more than needed and trim both ends, so the chunk
     * starts on a huge page boundary. */
    size_t span = len + HUGE_CHUNK;
    unsigned char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a =
        ((uintptr_t)p + HUGE_CHUNK - 1) & ~(uintptr_t)(HUGE_CHUNK - 1);
    size_t head = (size_t)(a - (uintptr_t)p);
    if (head)
        munmap(p, head);
    if (span - head > len)
        munmap((unsigned char *)a + len, span - head - len);
#ifdef MADV_HUGEPAGE
    /* Advice only: where huge pages are off, small pages do the same job. */
    (void)madvise((void *)a, len, MADV_HUGEPAGE);
#endif
    return (unsigned char *)a;
}

static void chunk_free(unsigned char *c, unsigned k)
{
    if (c && chunk_bytes(k) < HUGE_CHUNK)
        free(c);
    else if (c)
        munmap(c, chunk_bytes(k));
}

static unsigned char *chunk_base(const curfew *cf, uint32_t idx, uint32_t *off,
                                 unsigned *k)
{
    *k = chunk_of(idx, off);
    return atomic_load_explicit(&((curfew *)cf)->chunks[*k],
                                memory_order_acquire);
}

curfew__slot *curfew__slot_at(const curfew *cf, uint32_t idx)
{
    uint32_t off;
    unsigned k;
    unsigned char *c = chunk_base(cf, idx, &off, &k);
    return (curfew__slot *)(c + chunk_slots(k) * sizeof(curfew__hot)) + off;
}

curfew__hot *curfew__hot_at(const curfew *cf, uint32_t idx)
{
    uint32_t off;
    unsigned k;
    return (curfew__hot *)chunk_base(cf, idx, &off, &k) + off;
}

/* The hot half of a live id, or NULL; *ctl (if not NULL) gets the control
 * word as read. */
static curfew__hot *lookup(const curfew *cf, uint64_t id, uint64_t *ctl_out)
{
    uint32_t idx = (uint32_t)id;
    if ((id >> 32) == 0 ||
        idx >= atomic_load_explicit(&cf->hwm, memory_order_acquire))
        return NULL;
    curfew__hot *h = curfew__hot_at(cf, idx);
    uint64_t ctl = atomic_load_explicit(&h->ctl, memory_order_acquire);
    if (curfew__gen_of(ctl) != (uint32_t)(id >> 32) ||
        curfew__state_of(ctl) == CURFEW__S_FREE)
        return NULL;
    if (ctl_out)
        *ctl_out = ctl;
    return h;
}

static void list_unlink(curfew *cf, curfew_barrier *b, uint32_t idx)
{
    curfew__slot *s = curfew__slot_at(cf, idx);
    if (s->prev != CURFEW__NIL)
        curfew__slot_at(cf, s->prev)->next = s->next;
    else
        b->head = s->next;
    if (s->next != CURFEW__NIL)
        curfew__slot_at(cf, s->next)->prev = s->prev;
    else
        b->tail = s->prev;
    s->prev = s->next = CURFEW__NIL;
}

void curfew__broken_add(curfew *cf, const char *name, int err,
                        const curfew_barrier *barrier, const char *file,
                        int line, const char *func)
{
    curfew__broken *br = calloc(1, sizeof(*br));
    if (!br)
        return; /* the add itself still returned its error */
    br->name_copy = strdup(name ? name : "(null)");
    br->pub.name = br->name_copy ? br->name_copy : "(out of memory)";
    br->pub.error = err;
    br->pub.barrier = barrier ? barrier->name : NULL;
    br->pub.file = file;
    br->pub.line = line;
    br->pub.func = func;
    pthread_mutex_lock(&cf->lock);
    if (cf->broken_tail)
        cf->broken_tail->next = br;
    else
        cf->broken = br;
    cf->broken_tail = br;
    cf->nbroken++;
    pthread_mutex_unlock(&cf->lock);
}

int curfew_broken_registrations(curfew *cf, curfew_broken_registration *out,
                                unsigned max)
{
    if (!cf || (max && !out))
        return -EINVAL;
    pthread_mutex_lock(&cf->lock);
    unsigned i = 0;
    for (curfew__broken *br = cf->broken; br && i < max; br = br->next)
        out[i++] = br->pub;
    int n = (int)cf->nbroken;
    pthread_mutex_unlock(&cf->lock);
    return n;
}

static uint32_t site_hash(const char *file, const char *func, int line)
{
    uint64_t h = (uint64_t)(uintptr_t)file * 0x9E3779B97F4A7C15ull;
    h = (h ^ (uint64_t)(uintptr_t)func) * 0xC2B2AE3D27D4EB4Full;
    h = (h ^ (uint32_t)line) * 0x165667B19E3779F9ull;
    return (uint32_t)(h >> 32);
}

static void site_index_put(uint32_t *index, uint32_t cap, uint32_t h,
                           uint32_t site)
{
    uint32_t mask = cap - 1, i = h & mask;
    while (index[i])
        i = (i + 1) & mask;
    index[i] = site + 1;
}

/* The index of a call site, made if new, with cf->lock held: 0 and *out
 * set; 1 when the tables grew with the lock dropped (the caller rechecks
 * what it checked and asks again); -ENOMEM. A program has a fixed number
 * of call sites, so the tables stop growing early. */
static int site_of(curfew *cf, const char *file, const char *func, int line,
                   uint32_t *out)
{
    uint32_t h = site_hash(file, func, line);
    uint32_t icap = cf->sites_cap * 2;
    if (icap) {
        uint32_t mask = icap - 1;
        for (uint32_t i = h & mask; cf->site_index[i]; i = (i + 1) & mask) {
            const curfew__site *st = &cf->sites[cf->site_index[i] - 1];
            if (st->line == line && st->file == file && st->func == func) {
                *out = cf->site_index[i] - 1;
                return 0;
            }
        }
    }
    if (cf->nsites < cf->sites_cap) {
        curfew__site *st = &cf->sites[cf->nsites];
        st->file = file;
        st->func = func;
        st->line = line;
        site_index_put(cf->site_index, icap, h, cf->nsites);
        *out = cf->nsites++;
        return 0;
    }
    /* Grow, allocating with the lock dropped (W1). */
    uint32_t ncap = cf->sites_cap ? cf->sites_cap * 2 : 16;
    if (ncap > UINT32_MAX / 2)
        return -ENOMEM;
    pthread_mutex_unlock(&cf->lock);
    curfew__site *ns = malloc((size_t)ncap * sizeof(*ns));
    uint32_t *ni = calloc((size_t)ncap * 2, sizeof(*ni));
    pthread_mutex_lock(&cf->lock);
    if (!ns || !ni || cf->sites_cap >= ncap) {
        /* Out of memory, or another thread grew them meanwhile. */
        int grown = cf->sites_cap >= ncap;
        pthread_mutex_unlock(&cf->lock);
        free(ns);
        free(ni);
        pthread_mutex_lock(&cf->lock);
        return grown ? 1 : -ENOMEM;
    }
    if (cf->nsites)
        memcpy(ns, cf->sites, cf->nsites * sizeof(*ns));
    for (uint32_t i = 0; i < cf->nsites; i++)
        site_index_put(ni, ncap * 2,
                       site_hash(ns[i].file, ns[i].func, ns[i].line), i);
    curfew__site *os = cf->sites;
    uint32_t *oi = cf->site_index;
    cf->sites = ns;
    cf->site_index = ni;
    cf->sites_cap = ncap;
    pthread_mutex_unlock(&cf->lock);
    free(os);
    free(oi);
    pthread_mutex_lock(&cf->lock);
    return 1;
}

const curfew__site *curfew__site_at(const curfew *cf, uint32_t site)
{
    return &cf->sites[site];
}

/* Takes a slot index with cf->lock held. A new chunk is allocated with the
 * lock dropped (no allocation under the lock), so the caller rechecks what
 * it checked before. Returns CURFEW__NIL with the lock held when memory ran
 * out. *old gets the strings of a reused slot, to free after unlocking. */
static uint32_t slot_take(curfew *cf, char *old[3], int *relocked)
{
    *relocked = 0;
    if (cf->nreuse > REUSE_AFTER && !atomic_load(&cf->begun)) {
        uint32_t idx = cf->reuse_head;
        curfew__slot *s = curfew__slot_at(cf, idx);
        cf->reuse_head = s->link;
        if (cf->reuse_head == CURFEW__NIL)
            cf->reuse_tail = CURFEW__NIL;
        cf->nreuse--;
        list_unlink(cf, curfew__hot_at(cf, idx)->barrier, idx);
        old[0] = curfew__name_inline(s) ? NULL : s->name.ptr;
        old[1] = s->status;
        old[2] = atomic_exchange(&s->what, NULL);
        memset(&s->name, 0, sizeof(s->name));
        s->status = NULL;
        return idx;
    }
    for (;;) {
        uint32_t idx = atomic_load_explicit(&cf->hwm, memory_order_relaxed);
        if (idx == CURFEW__NIL)
            return CURFEW__NIL;
        uint32_t off;
        unsigned k = chunk_of(idx, &off);
        if (atomic_load_explicit(&cf->chunks[k], memory_order_relaxed))
            return idx;
        pthread_mutex_unlock(&cf->lock);
        unsigned char *c = chunk_alloc(k);
        pthread_mutex_lock(&cf->lock);
        *relocked = 1;
        if (!c)
            return CURFEW__NIL;
        unsigned char *expect = NULL;
        if (!atomic_compare_exchange_strong(&cf->chunks[k], &expect, c)) {
            pthread_mutex_unlock(&cf->lock);
            chunk_free(c, k);
            pthread_mutex_lock(&cf->lock);
        }
        /* Chunks are filled as slots are handed out; a chunk is never
         * read past hwm. Loop: the checks after relocking are the
         * caller's, this one only needs the chunk present. */
    }
}

int curfew__add(curfew_barrier *barrier, const char *name,
                curfew_trigger_fn trigger, void *arg, curfew_blocker *out,
                const char *file, int line, const char *func)
{
    if (out) {
        out->cf = NULL;
        out->id = 0;
    }
    if (!barrier)
        return -EINVAL;
    curfew *cf = barrier->cf;
    if (!name || !*name) {
        curfew__broken_add(cf, name, -EINVAL, barrier, file, line, func);
        return -EINVAL;
    }
    size_t nlen = strlen(name);
    char *copy = NULL;
    if (nlen >= CURFEW__NAME_INLINE) {
        copy = strdup(name);
        if (!copy) {
            curfew__broken_add(cf, name, -ENOMEM, barrier, file, line, func);
            return -ENOMEM;
        }
    }
    char *old[3] = {NULL, NULL, NULL};
    int err = 0, relocked;
    uint32_t idx = CURFEW__NIL, site = 0;
    pthread_mutex_lock(&cf->lock);
    for (;;) {
        if (atomic_load(&barrier->state) == CURFEW_COMPLETE) {
            err = -ESHUTDOWN;
            break;
        }
        int r = site_of(cf, file, func, line, &site);
        if (r < 0) {
            err = r;
            break;
        }
        if (r > 0)
            continue;
        idx = slot_take(cf, old, &relocked);
        if (idx == CURFEW__NIL) {
            err = -ENOMEM;
            break;
        }
        if (!relocked)
            break;
    }
    if (err) {
        pthread_mutex_unlock(&cf->lock);
        free(copy);
        curfew__broken_add(cf, name, err, barrier, file, line, func);
        return err;
    }

    curfew__slot *s = curfew__slot_at(cf, idx);
    curfew__hot *h = curfew__hot_at(cf, idx);
    uint32_t gen = 1;
    if (idx < atomic_load_explicit(&cf->hwm, memory_order_relaxed)) {
        gen = curfew__gen_of(atomic_load(&h->ctl)) + 1;
        if (gen == 0)
            gen = 1;
    } else {
        s->status = NULL;
        atomic_init(&s->what, NULL);
    }
    s->prev = barrier->tail;
    s->next = CURFEW__NIL;
    s->link = CURFEW__NIL;
    s->site = site;
    h->barrier = barrier;
    if (copy) {
        s->name.ptr = copy;
        s->name.inl[CURFEW__NAME_INLINE - 1] = 1;
    } else {
        memcpy(s->name.inl, name, nlen + 1);
        s->name.inl[CURFEW__NAME_INLINE - 1] = 0;
    }
    s->trigger = trigger;
    s->arg = arg;
    atomic_store_explicit(&s->t_start, 0, memory_order_relaxed);
    atomic_store_explicit(&s->err, 0, memory_order_relaxed);
    atomic_store_explicit(&h->ctl, (uint64_t)gen << 32 | CURFEW__S_IDLE,
                          memory_order_release);
    if (idx == atomic_load_explicit(&cf->hwm, memory_order_relaxed))
        atomic_store_explicit(&cf->hwm, idx + 1, memory_order_release);
    if (barrier->tail != CURFEW__NIL)
        curfew__slot_at(cf, barrier->tail)->next = idx;
    else
        barrier->head = idx;
    barrier->tail = idx;
    atomic_fetch_add(&barrier->pending, 1);
    int wake = 0;
    if (atomic_load(&barrier->state) == CURFEW_WAITING) {
        barrier->needs_trigger = 1;
        wake = 1;
    }
    pthread_mutex_unlock(&cf->lock);

    free(old[0]);
    free(old[1]);
    free(old[2]);
    atomic_fetch_add_explicit(&cf->st_blockers, 1, memory_order_relaxed);
    if (wake)
        curfew__wake(cf);
    if (out) {
        out->cf = cf;
        out->id = (uint64_t)gen << 32 | idx;
    }
    return 0;
}

int curfew_add_blocker_at(curfew_barrier *barrier, const char *name,
                          curfew_trigger_fn trigger, void *arg,
                          curfew_blocker *out, const char *file, int line,
                          const char *func)
{
    return curfew__add(barrier, name, trigger, arg, out, file, line, func);
}

/* Moves a slot to a finished state; the one caller whose CAS wins does the
 * bookkeeping. what is owned by this function. */
int curfew__finish(curfew *cf, uint64_t id, int state, int err,
                   const char *what)
{
    uint64_t ctl;
    curfew__hot *h = lookup(cf, id, &ctl);
    if (!h)
        return -ENOENT;
    uint64_t gen = id >> 32;
    for (;;) {
        int st = curfew__state_of(ctl);
        if ((ctl >> 32) != gen || st == CURFEW__S_FREE)
            return -ENOENT;
        if (st >= CURFEW__S_FINISHING)
            return state == CURFEW__S_REMOVED ? -ENOENT : -EALREADY;
        if (atomic_compare_exchange_weak_explicit(
                &h->ctl, &ctl, gen << 32 | CURFEW__S_FINISHING,
                memory_order_acq_rel, memory_order_acquire))
            break;
    }

    int begun = atomic_load(&cf->begun);
    uint32_t idx = (uint32_t)id;
    int32_t t_end = curfew__since_begin_ms(cf);
    if (t_end < 0)
        t_end = 0;
    if ((uint32_t)t_end > CURFEW__TEND_MAX)
        t_end = CURFEW__TEND_MAX;
    curfew__slot *s = NULL; /* the cold half, only when needed */
    if (state == CURFEW__S_FAILED || (state == CURFEW__S_TIMEOUT && what)) {
        s = curfew__slot_at(cf, idx);
        atomic_store_explicit(&s->err, err, memory_order_relaxed);
        char *w = what ? strdup(what) : NULL;
        atomic_store_explicit(&s->what, w, memory_order_release);
    }
    atomic_store_explicit(&h->ctl,
                          gen << 32 | (uint64_t)t_end << 8 | (uint64_t)state,
                          memory_order_release);

    int wake = 0;
    if (state == CURFEW__S_FAILED) {
        /* Reported on the dispatching thread (D4). Each slot is pushed at
         * most once and the consumer takes the whole stack, so no ABA. */
        uint64_t head = atomic_load(&cf->failed);
        do {
            s->link = head ? (uint32_t)(head - 1) : CURFEW__NIL;
        } while (!atomic_compare_exchange_weak(&cf->failed, &head,
                                               (uint64_t)idx + 1));
        wake = 1;
    }
    curfew_barrier *b = h->barrier;
    if (atomic_fetch_sub(&b->pending, 1) == 1)
        wake = 1;

    if (!begun && state != CURFEW__S_FAILED) {
        pthread_mutex_lock(&cf->lock);
        if (!atomic_load(&cf->begun)) {
            s = curfew__slot_at(cf, idx);
            s->link = CURFEW__NIL;
            if (cf->reuse_tail != CURFEW__NIL)
                curfew__slot_at(cf, cf->reuse_tail)->link = idx;
            else
                cf->reuse_head = idx;
            cf->reuse_tail = idx;
            cf->nreuse++;
        }
        pthread_mutex_unlock(&cf->lock);
    }
    /* Before begin nobody dispatches, and curfew_begin wakes the
     * dispatcher itself: no wake-up while idle (C6). */
    if (wake && atomic_load(&cf->begun))
        curfew__wake(cf);
    return 0;
}

int curfew_blocker_done(curfew_blocker b)
{
    if (!b.cf)
        return -EINVAL;
    return curfew__finish(b.cf, b.id, CURFEW__S_DONE, 0, NULL);
}

int curfew_blocker_fail(curfew_blocker b, int err, const char *what)
{
    if (!b.cf)
        return -EINVAL;
    if (err > 0)
        err = -err;
    else if (err == 0)
        err = -ECANCELED;
    return curfew__finish(b.cf, b.id, CURFEW__S_FAILED, err, what);
}

int curfew_blocker_expire(curfew_blocker b, const char *what)
{
    if (!b.cf)
        return -EINVAL;
    return curfew__finish(b.cf, b.id, CURFEW__S_TIMEOUT, -ETIMEDOUT, what);
}

int curfew_remove_blocker(curfew_blocker b)
{
    if (!b.cf)
        return -EINVAL;
    return curfew__finish(b.cf, b.id, CURFEW__S_REMOVED, 0, NULL);
}

/* Cuts s (len bytes) to at most max bytes without splitting a UTF-8
 * sequence; s must hold at least max + 4 readable bytes when len > max. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    /* Step back over at most three continuation bytes: the byte at cut is
     * the first one left out and must start a character. */
    for (int i = 0; i < 3 && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80;
         i++)
        cut--;
    return cut;
}

int curfew_blocker_vstatus(curfew_blocker b, const char *fmt, va_list ap)
{
    if (!b.cf || !fmt)
        return -EINVAL;
    curfew *cf = b.cf;
    char buf[CURFEW_STATUS_MAX + 8];
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    if (n < 0)
        return -EINVAL;
    size_t len = (size_t)n < sizeof(buf) - 1 ? (size_t)n : sizeof(buf) - 1;
    len = utf8_cut(buf, len, CURFEW_STATUS_MAX);
    buf[len] = '\0';

    char *fresh = NULL;
    for (;;) {
        pthread_mutex_lock(&cf->lock);
        if (!lookup(cf, b.id, NULL)) {
            pthread_mutex_unlock(&cf->lock);
            free(fresh);
            return -ENOENT;
        }
        curfew__slot *s = curfew__slot_at(cf, (uint32_t)b.id);
        if (!s->status && fresh) {
            s->status = fresh;
            fresh = NULL;
        }
        if (s->status) {
            memcpy(s->status, buf, len + 1);
            pthread_mutex_unlock(&cf->lock);
            free(fresh);
            return 0;
        }
        pthread_mutex_unlock(&cf->lock);
        fresh = malloc(CURFEW_STATUS_MAX + 1);
        if (!fresh)
            return -ENOMEM;
    }
}

int curfew_blocker_status(curfew_blocker b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = curfew_blocker_vstatus(b, fmt, ap);
    va_end(ap);
    return r;
}

static void copy_cut(char *dst, unsigned size, const char *src)
{
    if (!dst || !size)
        return;
    size_t len = src ? strlen(src) : 0;
    if (len >= size)
        len = size - 1;
    if (len)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

int curfew_blocker_describe(curfew_blocker b, char *name, unsigned name_size,
                            char *status, unsigned status_size)
{
    if (!b.cf)
        return -EINVAL;
    curfew *cf = b.cf;
    pthread_mutex_lock(&cf->lock);
    curfew__hot *h = lookup(cf, b.id, NULL);
    if (!h) {
        pthread_mutex_unlock(&cf->lock);
        return -ENOENT;
    }
    curfew__slot *s = curfew__slot_at(cf, (uint32_t)b.id);
    copy_cut(name, name_size, curfew__slot_name(s));
    copy_cut(status, status_size, s->status);
    int st = curfew__state_of(atomic_load(&h->ctl));
    pthread_mutex_unlock(&cf->lock);
    return st >= CURFEW__S_FINISHING;
}

int curfew_blocker_result(curfew_blocker b, int *err)
{
    if (err)
        *err = 0;
    if (!b.cf)
        return -EINVAL;
    curfew__hot *h = lookup(b.cf, b.id, NULL);
    if (!h)
        return -ENOENT;
    for (;;) {
        uint64_t ctl = atomic_load_explicit(&h->ctl, memory_order_acquire);
        if ((ctl >> 32) != (b.id >> 32))
            return -ENOENT;
        switch (curfew__state_of(ctl)) {
        case CURFEW__S_IDLE:
        case CURFEW__S_PENDING:
            return CURFEW_RESULT_PENDING;
        case CURFEW__S_FINISHING:
            /* A finisher is storing its results: a few stores away. */
            sched_yield();
            continue;
        case CURFEW__S_DONE:
            return CURFEW_RESULT_OK;
        case CURFEW__S_FAILED:
            if (err)
                *err = atomic_load_explicit(
                    &curfew__slot_at(b.cf, (uint32_t)b.id)->err,
                    memory_order_relaxed);
            return CURFEW_RESULT_ERROR;
        case CURFEW__S_TIMEOUT:
            return CURFEW_RESULT_TIMEOUT;
        case CURFEW__S_REMOVED:
            return CURFEW_RESULT_REMOVED;
        default:
            return -ENOENT;
        }
    }
}

void curfew__free_slots(curfew *cf)
{
    uint32_t n = atomic_load(&cf->hwm);
    for (uint32_t i = 0; i < n; i++) {
        curfew__slot *s = curfew__slot_at(cf, i);
        if (!curfew__name_inline(s))
            free(s->name.ptr);
        free(s->status);
        free(atomic_load(&s->what));
    }
    for (unsigned k = 0; k < CURFEW__NCHUNKS; k++)
        chunk_free(atomic_load(&cf->chunks[k]), k);
    free(cf->sites);
    free(cf->site_index);
}

unsigned curfew__expire(curfew *cf, curfew_barrier *b)
{
    unsigned n = 0;
    pthread_mutex_lock(&cf->lock);
    uint32_t idx = b->head;
    pthread_mutex_unlock(&cf->lock);
    while (idx != CURFEW__NIL) {
        pthread_mutex_lock(&cf->lock);
        curfew__slot *s = curfew__slot_at(cf, idx);
        uint64_t ctl = atomic_load(&curfew__hot_at(cf, idx)->ctl);
        curfew_barrier *inner =
            s->trigger == curfew__nested_trigger ? s->arg : NULL;
        uint32_t next = s->next;
        pthread_mutex_unlock(&cf->lock);
        int st = curfew__state_of(ctl);
        if ((st == CURFEW__S_IDLE || st == CURFEW__S_PENDING) &&
            curfew__finish(cf, (ctl >> 32) << 32 | idx, CURFEW__S_TIMEOUT, 0,
                           NULL) == 0)
            n++;
        if (inner)
            n += curfew__expire(cf, inner);
        idx = next;
    }
    return n;
}
