/* Internal structures of the core. Not installed.
 *
 * SPDX-License-Identifier: MIT
 *
 * Concurrency in one paragraph: cf->lock guards the structure (slot
 * allocation, barrier lists, barrier states, status texts, the broken
 * registration list). It is held only for short sections that neither
 * allocate nor call user code (W1). Finishing a blocker is lock-free after
 * shutdown began: a CAS on the slot's control word picks the one winner, an
 * atomic decrement of the barrier's pending count follows, and only the
 * decrement that reaches zero (or a failure) wakes the dispatcher, through
 * an eventfd written at most once per dispatch (D3). The list of waiting
 * barriers belongs to the dispatching thread alone.
 */
#ifndef CURFEW_CORE_INTERNAL_H
#define CURFEW_CORE_INTERNAL_H

#include <curfew/core.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CURFEW__NIL UINT32_MAX

/* Slot states, the low byte of the control word. Order matters: every
 * state >= S_FINISHING is finished. */
enum {
    CURFEW__S_FREE = 0,      /* never handed out */
    CURFEW__S_IDLE = 1,      /* added, trigger not run */
    CURFEW__S_PENDING = 2,   /* trigger ran (or runs), waiting for done */
    CURFEW__S_FINISHING = 3, /* a finisher won, is storing its results */
    CURFEW__S_DONE = 4,
    CURFEW__S_FAILED = 5,
    CURFEW__S_TIMEOUT = 6,
    CURFEW__S_REMOVED = 7
};

/* A blocker is split in two. The hot half is all that finishing it touches
 * (16 bytes, four to a cache line, in an array of its own): the control
 * word, which also carries the end time so that done stores once, and the
 * barrier whose count it lowers. The cold half is everything else. When
 * blockers finish in random order, each done then costs one cache miss
 * instead of two or three.
 *
 * Control word: generation (32 bits) << 32 | end time in ms since begin
 * (24 bits, saturating at CURFEW__TEND_MAX, about 4.6 hours) << 8 | state. */
#define CURFEW__TEND_MAX 0xffffffu
typedef struct curfew__hot {
    _Atomic uint64_t ctl;
    curfew_barrier *barrier;
} curfew__hot;

/* Where a blocker was added; the same call site adds under one index. The
 * strings are the caller's (static, as __FILE__ and __func__ are). */
typedef struct curfew__site {
    const char *file, *func;
    int32_t line;
} curfew__site;

/* The cold half (72 bytes): no per-blocker allocation but a name longer
 * than CURFEW__NAME_INLINE - 1 bytes (and the status buffer, made on the
 * first status call). name.inl[CURFEW__NAME_INLINE - 1] tells the two
 * forms apart: 0 (the terminator or padding) for an inline name, 1 beside
 * the pointer of a longer one. */
#define CURFEW__NAME_INLINE 16
typedef struct curfew__slot {
    uint32_t prev, next; /* the barrier's list; cf->lock */
    uint32_t link;       /* reuse queue or failure stack */
    uint32_t site;       /* in cf->sites */
    union {
        char *ptr;                     /* a longer name, malloc'd */
        char inl[CURFEW__NAME_INLINE]; /* a short one, no allocation */
    } name;
    curfew_trigger_fn trigger;
    void *arg;
    char *status;            /* CURFEW_STATUS_MAX + 1 bytes; cf->lock */
    _Atomic(char *) what;    /* failure text */
    _Atomic int32_t t_start; /* ms since begin: trigger ran */
    _Atomic int32_t err;
} curfew__slot;

static inline int curfew__name_inline(const curfew__slot *s)
{
    return s->name.inl[CURFEW__NAME_INLINE - 1] == 0;
}

static inline const char *curfew__slot_name(const curfew__slot *s)
{
    return curfew__name_inline(s) ? s->name.inl : s->name.ptr;
}

/* Slots live in chunks that never move: chunk k holds 64 << k slots, its
 * hot halves first, then its cold halves, so 27 chunk pointers cover every
 * 32-bit index and a lookup is two shifts. Chunks of 2 MiB and more are
 * mapped on their own and asked for transparent huge pages: one page fault
 * per 2 MiB instead of 512 while adding, and no TLB miss per done. */
#define CURFEW__CHUNK0 64u
#define CURFEW__NCHUNKS 27

struct curfew_barrier {
    curfew *cf;
    char *name;
    int is_phase;
    unsigned phase_index;
    int32_t warn_ms, crash_ms; /* resolved: ms or CURFEW_NEVER */
    _Atomic int state;         /* curfew_barrier_state */
    _Atomic int64_t pending;   /* unfinished blockers */
    uint32_t head, tail;       /* slot list, oldest first; cf->lock */
    uint32_t cursor;           /* last slot triggered; dispatcher */
    int needs_trigger;         /* blockers added while waiting; cf->lock */
    curfew_barrier *outer;     /* waits in; cf->lock */
    uint64_t outer_id;         /* its blocker in outer */
    int64_t t_start, t_end;    /* ms since begin */
    curfew_barrier *all_next;  /* every barrier of cf; cf->lock */
    curfew_barrier *wnext;     /* waiting list; dispatcher only */
    int warned, fired;         /* watchdog: timers that went off; cf->lock */
    /* When fired: the time its timeout counted from (ms since begin):
     * t_start then, or 0 for the budget (W5) of a phase not yet started,
     * which may start before the report is written; cf->lock. */
    int64_t fired_since;
    int warn_event; /* a warning for the dispatcher; cf->lock */
};

/* A JSON text attached to reports (children, sections). Never freed before
 * curfew_destroy: a report being written may still read a replaced one. */
typedef struct curfew__extra {
    struct curfew__extra *next;
    char *key; /* NULL for a child */
    char *json;
    size_t len;
    int live; /* 0 once replaced */
} curfew__extra;

typedef struct curfew__ext {
    struct curfew__ext *next;
    const void *key;
    void *ptr;
    void (*free_fn)(void *ptr);
} curfew__ext;

typedef struct curfew__notice {
    struct curfew__notice *next;
    const curfew_barrier *barrier;
    char text[]; /* NUL-terminated */
} curfew__notice;

typedef struct curfew__broken {
    struct curfew__broken *next;
    curfew_broken_registration pub;
    char *name_copy;
} curfew__broken;

struct curfew {
    pthread_mutex_t lock;

    /* Configuration, immutable after curfew_create. */
    unsigned nphases;
    curfew_barrier **phases;
    int32_t warn_ms, crash_ms;
    curfew_timeout_action on_timeout;
    int timeout_exit_code;
    char *report_path, *record_path, *process_name;
    _Atomic int64_t budget_ms;
    int32_t budget_margin_ms;
    int exit_after; /* phase index or -1 */
    int exit_code;
    curfew_event_fn on_event;
    void *event_arg;
    int dynamic_phase, static_phase; /* phase index or -1 */
    int strict_leaks;

    /* Wake-up descriptor (eventfd, or a pipe where there is none). */
    int wake_rd, wake_wr;
    _Atomic int wake_pending;

    /* Shutdown progress. */
    _Atomic int begun;     /* 0, 1 (beginning), 2 (t0 valid) */
    _Atomic int64_t t0_ns; /* CLOCK_MONOTONIC at begin */
    _Atomic int cur_phase; /* -1 before begin */
    _Atomic int complete;
    _Atomic int dispatching;
    int began_reported;            /* dispatcher */
    int phase_started;             /* dispatcher: cur phase barrier started */
    curfew_barrier *whead, *wtail; /* waiting barriers; dispatcher */

    /* Slots. */
    _Atomic(unsigned char *) chunks[CURFEW__NCHUNKS];
    _Atomic uint32_t hwm;                    /* slots ever handed out */
    uint32_t reuse_head, reuse_tail, nreuse; /* cf->lock */
    _Atomic uint64_t failed; /* stack of failed slots: idx + 1, 0 empty */

    /* Call sites (cf->lock): sites by index, and an open-addressing index
     * of them (site + 1, 0 empty) at most half full. */
    curfew__site *sites;
    uint32_t nsites, sites_cap;
    uint32_t *site_index; /* 2 * sites_cap entries */

    curfew_barrier *barriers; /* every barrier; cf->lock */
    curfew_barrier *barriers_tail;
    curfew__broken *broken, *broken_tail;
    unsigned nbroken;

    _Atomic uint64_t st_wakeups, st_dispatches, st_blockers;

    /* Watchdog (src/watchdog). wd_lock is never held by user code. */
    pthread_mutex_t wd_lock;
    pthread_cond_t wd_cond;
    pthread_t wd_thread;
    _Atomic int wd_started; /* 0, 1 started, -1 could not start */
    int wd_stop;            /* wd_lock */
    int wd_kick;            /* deadlines changed; wd_lock */
    _Atomic int budget_expired;
    _Atomic int warn_events; /* barriers have warn_event set */

    /* Reports (src/report). rec_lock serialises record rewrites. The extra
     * lists only grow (cf->lock); entries never change once linked. */
    pthread_mutex_t rec_lock;
    curfew__extra *extras, *extras_tail;
    _Atomic(char *) failure; /* "what (error)", set once */

    curfew__ext *exts; /* cf->lock */
    struct curfew__listener {
        curfew_event_fn fn;
        void *arg;
    } * listeners; /* fixed once begun */
    unsigned nlisteners;
    curfew__notice *notices, *notices_tail; /* cf->lock */
};

/* Slots (blocker.c). */
curfew__slot *curfew__slot_at(const curfew *cf, uint32_t idx);
curfew__hot *curfew__hot_at(const curfew *cf, uint32_t idx);
/* With cf->lock held. */
const curfew__site *curfew__site_at(const curfew *cf, uint32_t site);
int curfew__add(curfew_barrier *barrier, const char *name,
                curfew_trigger_fn trigger, void *arg, curfew_blocker *out,
                const char *file, int line, const char *func);
int curfew__finish(curfew *cf, uint64_t id, int state, int err,
                   const char *what);
void curfew__broken_add(curfew *cf, const char *name, int err,
                        const curfew_barrier *barrier, const char *file,
                        int line, const char *func);
void curfew__free_slots(curfew *cf);
void curfew__free_extras(curfew *cf);

/* Coordinator (coordinator.c). */
int64_t curfew__now_ns(void);
int32_t curfew__since_begin_ms(const curfew *cf);
void curfew__wake(curfew *cf);

/* Calls cfg->on_event and the listeners. */
void curfew__deliver(curfew *cf, const curfew_event *ev);

/* Dispatch (dispatch.c). */
int curfew__nested_trigger(curfew_blocker self, void *arg);

/* Watchdog (src/watchdog/watchdog.c). start: from curfew_begin or the first
 * dispatch; kick: a barrier started or completed; stop: from destroy. */
void curfew__watchdog_start(curfew *cf);
void curfew__watchdog_kick(curfew *cf);
void curfew__watchdog_stop(curfew *cf);
/* Marks every unfinished blocker under b (nested barriers included)
 * timeout; returns how many. */
unsigned curfew__expire(curfew *cf, curfew_barrier *b);

/* Reports (src/report/report.c). */
int curfew__record_rewrite(curfew *cf);
int curfew__report_write(curfew *cf, int fd, const char *type,
                         curfew_barrier *b, int64_t timeout_ms);
int curfew__report_to_path(curfew *cf, const char *path, const char *type,
                           curfew_barrier *b, int64_t timeout_ms);
/* "name (status)" of every pending blocker under b, joined by sep, cut to
 * cap - 1 bytes; returns the length. With one_line, control bytes in names
 * and statuses become spaces. No malloc, no stdio. */
size_t curfew__pending_list(curfew *cf, curfew_barrier *b, char *buf,
                            size_t cap, const char *sep, int one_line);

static inline int curfew__state_of(uint64_t ctl)
{
    return (int)(ctl & 0xff);
}

static inline uint32_t curfew__gen_of(uint64_t ctl)
{
    return (uint32_t)(ctl >> 32);
}

static inline int32_t curfew__tend_of(uint64_t ctl)
{
    return (int32_t)((ctl >> 8) & CURFEW__TEND_MAX);
}

#endif
