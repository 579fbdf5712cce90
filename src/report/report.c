/* The hang report (R1) and the shutdown record (R2), written without
 * malloc and without stdio (W4), and atomically to their paths.
 *
 * SPDX-License-Identifier: MIT
 *
 * The writers walk the barriers' blocker lists taking cf->lock for one slot
 * at a time and copying what they need into stack buffers, so the lock is
 * never held across I/O. Names are copied too: before curfew_begin a
 * finished slot may be reused and its name freed.
 */
#define _GNU_SOURCE
#include "core/internal.h"
#include "report/jsonr.h"
#include "report/jsonw.h"

#include <curfew/report.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h> /* rename() only: no stdio stream is used */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME_MAX_COPY 512
#define WHAT_MAX_COPY 256
#define PATH_DEPTH 32

typedef struct snap {
    char name[NAME_MAX_COPY];
    char status[CURFEW_STATUS_MAX + 1];
    char what[WHAT_MAX_COPY];
    const char *file, *func;
    int line;
    int state;
    int32_t t_start, t_end;
    int err;
    curfew_barrier *barrier; /* the barrier the slot belongs to */
    curfew_barrier *inner;   /* a nested barrier's blocker: that barrier */
    int64_t barrier_start;   /* ms since begin the barrier started */
} snap;

static void copy_cut(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size) {
        n = size - 1;
        /* Do not end inside a UTF-8 sequence. */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

typedef int (*visit_fn)(void *ctx, const snap *s);

/* Visits the slots of b in order, each nested barrier's slots right after
 * the blocker that stands for it. Stops early if fn returns non-zero. */
static int walk(curfew *cf, curfew_barrier *b, visit_fn fn, void *ctx, snap *s,
                int depth)
{
    if (depth > PATH_DEPTH)
        return 0;
    pthread_mutex_lock(&cf->lock);
    uint32_t idx = b->head;
    int64_t bstart = b->t_start;
    pthread_mutex_unlock(&cf->lock);
    while (idx != CURFEW__NIL) {
        pthread_mutex_lock(&cf->lock);
        curfew__slot *sl = curfew__slot_at(cf, idx);
        copy_cut(s->name, sizeof(s->name), curfew__slot_name(sl));
        copy_cut(s->status, sizeof(s->status), sl->status);
        copy_cut(s->what, sizeof(s->what), atomic_load(&sl->what));
        const curfew__site *site = curfew__site_at(cf, sl->site);
        s->file = site->file;
        s->func = site->func;
        s->line = site->line;
        uint64_t ctl = atomic_load(&curfew__hot_at(cf, idx)->ctl);
        s->state = curfew__state_of(ctl);
        s->t_start = atomic_load(&sl->t_start);
        s->t_end = curfew__tend_of(ctl);
        s->err = atomic_load(&sl->err);
        s->barrier = b;
        s->inner = sl->trigger == curfew__nested_trigger ? sl->arg : NULL;
        s->barrier_start = bstart;
        uint32_t next = sl->next;
        pthread_mutex_unlock(&cf->lock);
        int r = fn(ctx, s);
        if (r)
            return r;
        if (s->inner) {
            r = walk(cf, s->inner, fn, ctx, s, depth + 1);
            if (r)
                return r;
        }
        idx = next;
    }
    return 0;
}

static int unfinished(int state)
{
    return state == CURFEW__S_IDLE || state == CURFEW__S_PENDING;
}

static const char *result_name(int state)
{
    switch (state) {
    case CURFEW__S_DONE:
        return "ok";
    case CURFEW__S_FAILED:
        return "error";
    case CURFEW__S_TIMEOUT:
        return "timeout";
    case CURFEW__S_REMOVED:
        return "removed";
    default:
        return "pending";
    }
}

static void write_broken(curfew *cf, curfew__jw *w)
{
    curfew__jw_key(w, "broken_registrations");
    curfew__jw_arr(w);
    /* The list only grows at its tail; entries never change once linked. */
    pthread_mutex_lock(&cf->lock);
    curfew__broken *br = cf->broken;
    pthread_mutex_unlock(&cf->lock);
    for (; br;) {
        curfew__jw_obj(w);
        curfew__jw_kstr(w, "name", br->pub.name);
        curfew__jw_kstr(w, "error", curfew_strerror(br->pub.error));
        curfew__jw_kint(w, "code", br->pub.error);
        curfew__jw_kstr(w, "barrier", br->pub.barrier);
        curfew__jw_kstr(w, "file", br->pub.file);
        curfew__jw_kint(w, "line", br->pub.line);
        curfew__jw_kstr(w, "function", br->pub.func);
        curfew__jw_obj_end(w);
        pthread_mutex_lock(&cf->lock);
        br = br->next;
        pthread_mutex_unlock(&cf->lock);
    }
    curfew__jw_arr_end(w);
}

/* "children" (P6) and the modules' sections. The list only grows at its
 * tail and entries never change once linked, so one look at the head
 * under the lock is enough. */
static void write_extras(curfew *cf, curfew__jw *w)
{
    pthread_mutex_lock(&cf->lock);
    curfew__extra *head = cf->extras;
    pthread_mutex_unlock(&cf->lock);
    curfew__jw_key(w, "children");
    curfew__jw_arr(w);
    for (curfew__extra *e = head; e; e = e->next)
        if (!e->key)
            curfew__jw_json(w, e->json, e->len);
    curfew__jw_arr_end(w);
    for (curfew__extra *e = head; e; e = e->next) {
        if (e->key && e->live) {
            curfew__jw_key(w, e->key);
            curfew__jw_json(w, e->json, e->len);
        }
    }
}

static void write_head(curfew *cf, curfew__jw *w, const char *type)
{
    curfew__jw_obj(w);
    curfew__jw_kstr(w, "type", type);
    curfew__jw_kint(w, "version", 1);
    curfew__jw_kint(w, "pid", (int64_t)getpid());
    curfew__jw_kstr(w, "process", cf->process_name);
}

/* ---- hang report (R1) --------------------------------------------------- */

typedef struct cond_ctx {
    curfew__jw *w;
    int32_t now;
} cond_ctx;

static int visit_condition(void *ctx, const snap *s)
{
    cond_ctx *c = ctx;
    if (!unfinished(s->state))
        return 0;
    curfew__jw *w = c->w;
    int64_t since =
        s->state == CURFEW__S_PENDING ? s->t_start : s->barrier_start;
    curfew__jw_obj(w);
    curfew__jw_kstr(w, "name", s->name);
    curfew__jw_kstr(w, "status", s->status);
    curfew__jw_kstr(w, "file", s->file);
    curfew__jw_kint(w, "line", s->line);
    curfew__jw_kstr(w, "function", s->func);
    /* A blocker that started after the report took its time (the walk
     * reads each slot later) is younger than any age: 0, never below. */
    curfew__jw_kint(w, "age_ms", c->now > since ? c->now - since : 0);
    curfew__jw_kstr(w, "barrier", s->barrier->name);
    curfew__jw_obj_end(w);
    return 0;
}

int curfew__report_write(curfew *cf, int fd, const char *type,
                         curfew_barrier *b, int64_t timeout_ms)
{
    char buf[4096];
    curfew__jw w;
    snap s;
    curfew__jw_init(&w, fd, buf, sizeof(buf));
    int32_t now = curfew__since_begin_ms(cf);

    write_head(cf, &w, type);
    curfew__jw_kstr(&w, "phase", curfew_current_phase(cf));

    const char *path[PATH_DEPTH];
    int depth = 0;
    int64_t bstart = 0;
    pthread_mutex_lock(&cf->lock);
    for (curfew_barrier *x = b; x && depth < PATH_DEPTH; x = x->outer)
        path[depth++] = x->name;
    if (b)
        bstart = b->fired ? b->fired_since : b->t_start;
    pthread_mutex_unlock(&cf->lock);
    curfew__jw_key(&w, "barrier_path");
    curfew__jw_arr(&w);
    while (depth > 0)
        curfew__jw_str(&w, path[--depth]);
    curfew__jw_arr_end(&w);
    curfew__jw_kint(&w, "elapsed_ms", b && now > bstart ? now - bstart : 0);
    curfew__jw_key(&w, "timeout_ms");
    if (timeout_ms >= 0)
        curfew__jw_int(&w, timeout_ms);
    else
        curfew__jw_null(&w);

    curfew__jw_key(&w, "conditions");
    curfew__jw_arr(&w);
    if (b) {
        cond_ctx c = {&w, now};
        walk(cf, b, visit_condition, &c, &s, 0);
    }
    curfew__jw_arr_end(&w);

    write_broken(cf, &w);

    curfew__jw_key(&w, "phases");
    curfew__jw_arr(&w);
    for (unsigned i = 0; i < cf->nphases; i++) {
        curfew_barrier *p = cf->phases[i];
        if (atomic_load(&p->state) != CURFEW_COMPLETE)
            continue;
        pthread_mutex_lock(&cf->lock);
        int64_t d = p->t_end - p->t_start;
        pthread_mutex_unlock(&cf->lock);
        curfew__jw_obj(&w);
        curfew__jw_kstr(&w, "name", p->name);
        curfew__jw_kint(&w, "duration_ms", d);
        curfew__jw_obj_end(&w);
    }
    curfew__jw_arr_end(&w);

    write_extras(cf, &w);
    curfew__jw_obj_end(&w);
    curfew__jw_raw(&w, "\n", 1);
    return curfew__jw_finish(&w);
}

/* The innermost waiting barrier: the one a state report names. */
static curfew_barrier *innermost_waiting(curfew *cf)
{
    curfew_barrier *best = NULL;
    int best_depth = -1;
    pthread_mutex_lock(&cf->lock);
    for (curfew_barrier *b = cf->barriers; b; b = b->all_next) {
        if (atomic_load(&b->state) != CURFEW_WAITING)
            continue;
        int d = 0;
        for (curfew_barrier *x = b->outer; x; x = x->outer)
            d++;
        if (d > best_depth) {
            best = b;
            best_depth = d;
        }
    }
    pthread_mutex_unlock(&cf->lock);
    return best;
}

int curfew_report_write_state(curfew *cf, int fd)
{
    if (!cf || fd < 0)
        return -EINVAL;
    curfew_barrier *b = innermost_waiting(cf);
    return curfew__report_write(cf, fd, "curfew-state", b,
                                b ? b->crash_ms : -1);
}

int curfew_report_write_hang(curfew *cf, int fd)
{
    if (!cf || fd < 0)
        return -EINVAL;
    curfew_barrier *b = innermost_waiting(cf);
    if (!b)
        return curfew__report_write(cf, fd, "curfew-hang", NULL, -1);
    /* The timeout that applied, as the watchdog computes it: the
     * barrier's own, or less when the budget ends first (W5). */
    int64_t t = b->crash_ms == CURFEW_NEVER ? -1 : b->crash_ms;
    int64_t budget = atomic_load(&cf->budget_ms);
    if (budget > 0) {
        pthread_mutex_lock(&cf->lock);
        int64_t start = b->t_start;
        pthread_mutex_unlock(&cf->lock);
        int64_t left = budget - cf->budget_margin_ms - start;
        if (left < 0)
            left = 0;
        if (t < 0 || left < t)
            t = left;
    }
    return curfew__report_write(cf, fd, "curfew-hang", b, t);
}

/* ---- shutdown record (R2) ----------------------------------------------- */

typedef struct rec_ctx {
    curfew__jw *w;
} rec_ctx;

static int visit_record(void *ctx, const snap *s)
{
    curfew__jw *w = ((rec_ctx *)ctx)->w;
    curfew__jw_obj(w);
    curfew__jw_kstr(w, "name", s->name);
    curfew__jw_kstr(w, "barrier", s->barrier->name);
    curfew__jw_key(w, "start_ms");
    if (s->state == CURFEW__S_IDLE)
        curfew__jw_null(w);
    else
        curfew__jw_int(w, s->t_start);
    curfew__jw_key(w, "end_ms");
    if (unfinished(s->state))
        curfew__jw_null(w);
    else
        curfew__jw_int(w, s->t_end);
    curfew__jw_kstr(w, "result", result_name(s->state));
    if (s->state == CURFEW__S_FAILED) {
        char text[WHAT_MAX_COPY + 96];
        size_t n = 0, k;
        if (s->what[0]) {
            k = strlen(s->what);
            memcpy(text, s->what, k);
            n = k;
            memcpy(text + n, " (", 2);
            n += 2;
        }
        const char *e = curfew_strerror(s->err);
        k = strlen(e);
        if (k > sizeof(text) - n - 2)
            k = sizeof(text) - n - 2;
        memcpy(text + n, e, k);
        n += k;
        if (s->what[0])
            text[n++] = ')';
        curfew__jw_key(w, "error");
        curfew__jw_strn(w, text, n);
        curfew__jw_kint(w, "code", s->err);
    }
    if (s->status[0])
        curfew__jw_kstr(w, "status", s->status);
    curfew__jw_obj_end(w);
    return 0;
}

static int record_write(curfew *cf, int fd)
{
    char buf[8192];
    curfew__jw w;
    snap s;
    curfew__jw_init(&w, fd, buf, sizeof(buf));
    write_head(cf, &w, "curfew-record");

    /* Clean once the last phase it runs completed: the last phase, or
     * exit_after (C5). Phases complete in order, and a phase's state is
     * set before its PHASE_END handlers run, so a record written from one
     * (a child about to exit, P3) is clean too. */
    int last = cf->exit_after >= 0 ? cf->exit_after : (int)cf->nphases - 1;
    int clean = atomic_load(&cf->phases[last]->state) == CURFEW_COMPLETE;
    const char *failure = atomic_load(&cf->failure);
    curfew__jw_key(&w, "clean");
    curfew__jw_bool(&w, clean && !failure);
    curfew__jw_kstr(&w, "failure", failure);
    curfew__jw_kstr(&w, "exit_after",
                    cf->exit_after >= 0 ? cf->phases[cf->exit_after]->name
                                        : NULL);
    curfew__jw_kint(&w, "elapsed_ms", curfew__since_begin_ms(cf));

    curfew__jw_key(&w, "phases");
    curfew__jw_arr(&w);
    for (unsigned i = 0; i < cf->nphases; i++) {
        curfew_barrier *p = cf->phases[i];
        int st = atomic_load(&p->state);
        pthread_mutex_lock(&cf->lock);
        int64_t t0 = p->t_start, t1 = p->t_end;
        pthread_mutex_unlock(&cf->lock);
        curfew__jw_obj(&w);
        curfew__jw_kstr(&w, "name", p->name);
        curfew__jw_key(&w, "start_ms");
        if (st == CURFEW_NOT_STARTED)
            curfew__jw_null(&w);
        else
            curfew__jw_int(&w, t0);
        curfew__jw_key(&w, "end_ms");
        if (st == CURFEW_COMPLETE)
            curfew__jw_int(&w, t1);
        else
            curfew__jw_null(&w);
        curfew__jw_key(&w, "blockers");
        curfew__jw_arr(&w);
        rec_ctx c = {&w};
        walk(cf, p, visit_record, &c, &s, 0);
        curfew__jw_arr_end(&w);
        curfew__jw_obj_end(&w);
    }
    curfew__jw_arr_end(&w);

    write_broken(cf, &w);
    write_extras(cf, &w);
    curfew__jw_obj_end(&w);
    curfew__jw_raw(&w, "\n", 1);
    return curfew__jw_finish(&w);
}

/* ---- atomic files -------------------------------------------------------- */

typedef int (*gen_fn)(curfew *cf, int fd, void *arg);

/* path.PID.tmp, written whole, then renamed over path: a reader sees the
 * old file or the new one, never a torn one. No fsync: the record guards
 * against the process dying, not against power loss, and a shutdown should
 * not wait on the disk for its diagnostics. */
static int write_file(curfew *cf, const char *path, gen_fn gen, void *arg,
                      int copy_to_stderr)
{
    char tmp[PATH_MAX];
    char pid[24];
    size_t plen = strlen(path);
    size_t nlen = curfew__fmt_int(pid, (int64_t)getpid());
    if (plen + 1 + nlen + 5 > sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, plen);
    tmp[plen] = '.';
    memcpy(tmp + plen + 1, pid, nlen);
    memcpy(tmp + plen + 1 + nlen, ".tmp", 5);

    int fd =
        open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    int r = gen(cf, fd, arg);
    if (r == 0 && copy_to_stderr && lseek(fd, 0, SEEK_SET) == 0) {
        char buf[4096];
        ssize_t n;
        while ((n = read(fd, buf, sizeof(buf))) > 0 ||
               (n < 0 && errno == EINTR)) {
            for (ssize_t off = 0; n > 0 && off < n;) {
                ssize_t m = write(2, buf + off, (size_t)(n - off));
                if (m < 0 && errno != EINTR)
                    break;
                if (m > 0)
                    off += m;
            }
        }
    }
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r != 0)
        unlink(tmp);
    return r;
}

typedef struct report_args {
    const char *type;
    curfew_barrier *b;
    int64_t timeout_ms;
} report_args;

static int gen_report(curfew *cf, int fd, void *arg)
{
    report_args *a = arg;
    return curfew__report_write(cf, fd, a->type, a->b, a->timeout_ms);
}

int curfew__report_to_path(curfew *cf, const char *path, const char *type,
                           curfew_barrier *b, int64_t timeout_ms)
{
    report_args a = {type, b, timeout_ms};
    if (!path)
        return curfew__report_write(cf, 2, type, b, timeout_ms);
    int r = write_file(cf, path, gen_report, &a, 1);
    if (r != 0) /* the report still reaches stderr */
        curfew__report_write(cf, 2, type, b, timeout_ms);
    return r;
}

static int gen_record(curfew *cf, int fd, void *arg)
{
    (void)arg;
    return record_write(cf, fd);
}

int curfew__record_rewrite(curfew *cf)
{
    if (!cf->record_path)
        return 0;
    pthread_mutex_lock(&cf->rec_lock);
    int r = write_file(cf, cf->record_path, gen_record, NULL, 0);
    pthread_mutex_unlock(&cf->rec_lock);
    return r;
}

int curfew_record_write_now(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    if (!cf->record_path)
        return -ENOENT;
    return curfew__record_rewrite(cf);
}

int64_t curfew_blockers_finished(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    /* Added blockers less the unfinished ones. The total is read first, so
     * an add racing with the sum (its pending count is raised under the
     * lock, the total just after) can only make this call one smaller; a
     * later call then counts it, which a progress check may take for one
     * finished blocker. Adds during a shutdown are rare; exactness would
     * cost a lock on every add. */
    int64_t added = (int64_t)atomic_load(&cf->st_blockers);
    int64_t pending = 0;
    pthread_mutex_lock(&cf->lock);
    for (curfew_barrier *b = cf->barriers; b; b = b->all_next)
        pending += atomic_load(&b->pending);
    pthread_mutex_unlock(&cf->lock);
    return added > pending ? added - pending : 0;
}

/* ---- pending list (warnings) -------------------------------------------- */

typedef struct list_ctx {
    char *buf;
    size_t cap, len;
    const char *sep;
    int any;
    int one_line;
} list_ctx;

static void list_put(list_ctx *c, const char *s)
{
    size_t n = strlen(s);
    if (c->len + n >= c->cap) {
        n = c->len + 1 < c->cap ? c->cap - 1 - c->len : 0;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(c->buf + c->len, s, n);
    /* A warning on stderr is one line whatever a status holds. */
    if (c->one_line)
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)c->buf[c->len + i] < 0x20)
                c->buf[c->len + i] = ' ';
    c->len += n;
    c->buf[c->len] = '\0';
}

static int visit_list(void *ctx, const snap *s)
{
    list_ctx *c = ctx;
    if (!unfinished(s->state) || s->inner)
        return 0; /* a nested barrier's own blockers are listed instead */
    if (c->any) {
        int one = c->one_line;
        c->one_line = 0;
        list_put(c, c->sep);
        c->one_line = one;
    }
    c->any = 1;
    list_put(c, s->name);
    if (s->status[0]) {
        list_put(c, " (");
        list_put(c, s->status);
        list_put(c, ")");
    }
    return c->len + 1 >= c->cap;
}

size_t curfew__pending_list(curfew *cf, curfew_barrier *b, char *buf,
                            size_t cap, const char *sep, int one_line)
{
    if (cap == 0)
        return 0;
    list_ctx c = {buf, cap, 0, sep, 0, one_line};
    snap s;
    buf[0] = '\0';
    walk(cf, b, visit_list, &c, &s, 0);
    return c.len;
}

/* ---- attached sections ----------------------------------------------------
 */

static const char *const reserved[] = {
    "type",       "version",      "pid",        "process",
    "phase",      "barrier_path", "elapsed_ms", "timeout_ms",
    "conditions", "phases",       "children",   "broken_registrations",
    "clean",      "exit_after",   "failure"};

/* Checks that json is one JSON value (an object when want_object). */
static int check_json(const char *json, size_t len, int want_object)
{
    curfew__jval *v = NULL;
    int r = curfew__json_parse(json, len, &v, NULL, 0);
    if (r == -EPROTO)
        return -EINVAL;
    if (r)
        return r;
    int ok = !want_object || v->type == CURFEW__J_OBJ;
    curfew__json_free(v);
    return ok ? 0 : -EINVAL;
}

static int attach(curfew *cf, const char *key, const char *json, size_t len)
{
    curfew__extra *e = calloc(1, sizeof(*e));
    char *k = key ? strdup(key) : NULL;
    char *j = malloc(len + 1);
    if (!e || (key && !k) || !j) {
        free(e);
        free(k);
        free(j);
        return -ENOMEM;
    }
    memcpy(j, json, len);
    j[len] = '\0';
    e->key = k;
    e->json = j;
    e->len = len;
    e->live = 1;
    pthread_mutex_lock(&cf->lock);
    if (key)
        for (curfew__extra *x = cf->extras; x; x = x->next)
            if (x->key && x->live && strcmp(x->key, key) == 0)
                x->live = 0;
    if (cf->extras_tail)
        cf->extras_tail->next = e;
    else
        cf->extras = e;
    cf->extras_tail = e;
    pthread_mutex_unlock(&cf->lock);
    return 0;
}

int curfew_report_add_child(curfew *cf, const char *json, size_t len)
{
    if (!cf || !json)
        return -EINVAL;
    int r = check_json(json, len, 1);
    return r ? r : attach(cf, NULL, json, len);
}

int curfew_report_set_section(curfew *cf, const char *key, const char *json,
                              size_t len)
{
    if (!cf || !key || !*key || !json)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcmp(key, reserved[i]) == 0)
            return -EINVAL;
    int r = check_json(json, len, 0);
    return r ? r : attach(cf, key, json, len);
}

int curfew_record_failure(curfew *cf, int err, const char *what)
{
    if (!cf)
        return -EINVAL;
    const char *e = curfew_strerror(err > 0 ? -err : err);
    size_t n = (what ? strlen(what) + 3 : 0) + strlen(e) + 1;
    char *text = malloc(n);
    if (!text)
        return -ENOMEM;
    if (what)
        snprintf(text, n, "%s (%s)", what, e);
    else
        snprintf(text, n, "%s", e);
    char *expect = NULL;
    if (!atomic_compare_exchange_strong(&cf->failure, &expect, text)) {
        free(text);
        return -EALREADY;
    }
    return 0;
}

void curfew__free_extras(curfew *cf)
{
    for (curfew__extra *e = cf->extras, *n; e; e = n) {
        n = e->next;
        free(e->key);
        free(e->json);
        free(e);
    }
    free(atomic_load(&cf->failure));
}

size_t curfew_pending_summary(curfew *cf, char *buf, size_t size)
{
    if (!cf || !buf || !size)
        return 0;
    buf[0] = '\0';
    curfew_barrier *b = innermost_waiting(cf);
    if (!b)
        return 0;
    size_t n = strlen(b->name);
    if (n + 2 >= size)
        n = size > 3 ? size - 3 : 0;
    memcpy(buf, b->name, n);
    if (n + 2 < size) {
        buf[n++] = ':';
        buf[n++] = ' ';
        buf[n] = '\0';
    }
    return n + curfew__pending_list(cf, b, buf + n, size - n, ", ", 1);
}
