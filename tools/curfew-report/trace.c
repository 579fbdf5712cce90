/* curfew-report trace: the Chrome trace-event format (R3), which Perfetto
 * and chrome://tracing open.
 *
 * SPDX-License-Identifier: MIT
 *
 * {"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}}: "M"
 * events name the process and its tracks; every phase and blocker is a
 * complete event ("ph":"X", "ts" and "dur" in microseconds since the
 * shutdown began). One track holds the phases, and each barrier has a
 * track of its own for its blockers; blockers still pending run up to the
 * document's end. A barrier's blockers usually start together and so nest
 * as complete events must; when two of them only partly overlap, the later
 * one goes to an extra track of the same barrier ("barrier drain (2)"),
 * because a viewer cannot draw partly overlapping slices on one thread
 * (past MAX_LANES such tracks, the rest share an "(overflow)" track).
 * Broken registrations (B5) are instant events on a track of their own;
 * a hang or state report gets an instant event at its "now". Children's
 * reports (P6) become processes of their own.
 *
 * Every string is escaped (R4): quotes, backslashes and control characters,
 * and invalid UTF-8 becomes U+FFFD.
 */
#include "model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON output  * ------------------------------------------------------ */

static void jstr(FILE *out, const char *s)
{
    size_t n = strlen(s);
    fputc('"', out);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = cr_utf8_next(s + i, n - i, &cp);
        if (cp == '"' || cp == '\\') {
            fputc('\\', out);
            fputc((int)cp, out);
        } else if (cp == '\n') {
            fputs("\\n", out);
        } else if (cp == '\t') {
            fputs("\\t", out);
        } else if (cp == '\r') {
            fputs("\\r", out);
        } else if (cp < 0x20 || cp == 0x7F) {
            fprintf(out, "\\u%04x", (unsigned)cp);
        } else if (cp == 0xFFFD && k == 1) {
            fputs("\\ufffd", out); /* an invalid byte */
        } else if (cp == 0x2028 || cp == 0x2029) {
            /* Valid JSON either way; escaped, it is valid JavaScript. */
            fprintf(out, "\\u%04x", (unsigned)cp);
        } else {
            fwrite(s + i, 1, k, out);
        }
        i += k;
    }
    fputc('"', out);
}

static void jkey(FILE *out, int *first, const char *key)
{
    if (!*first)
        fputc(',', out);
    *first = 0;
    jstr(out, key);
    fputc(':', out);
}

static void jkstr(FILE *out, int *first, const char *key, const char *v)
{
    jkey(out, first, key);
    if (v)
        jstr(out, v);
    else
        fputs("null", out);
}

static void jkint(FILE *out, int *first, const char *key, int64_t v)
{
    jkey(out, first, key);
    fprintf(out, "%" PRId64, v);
}

/* ---- events  * ----------------------------------------------------------- */

typedef struct tw {
    FILE *out;
    int first_event;
    int64_t pid;
    int64_t offset_ms; /* where this document's time 0 lies */
} tw;

/* Opens an event object with the fields every event has. */
static void ev_open(tw *w, const char *name, const char *ph, int64_t ts_us,
                    int64_t tid, int *first)
{
    FILE *out = w->out;
    fputs(w->first_event ? "\n" : ",\n", out);
    w->first_event = 0;
    fputc('{', out);
    *first = 1;
    jkstr(out, first, "name", name);
    jkstr(out, first, "ph", ph);
    jkint(out, first, "ts", ts_us);
    jkint(out, first, "pid", w->pid);
    jkint(out, first, "tid", tid);
}

static void meta(tw *w, const char *what, int64_t tid, const char *name,
                 int64_t sort)
{
    int f;
    ev_open(w, what, "M", 0, tid, &f);
    jkey(w->out, &f, "args");
    int a = 1;
    fputc('{', w->out);
    if (name)
        jkstr(w->out, &a, "name", name);
    else
        jkint(w->out, &a, "sort_index", sort);
    fputs("}}", w->out);
}

static void thread_meta(tw *w, int64_t tid, const char *name)
{
    meta(w, "thread_name", tid, name, 0);
    meta(w, "thread_sort_index", tid, NULL, tid);
}

static int64_t us(const tw *w, int64_t ms)
{
    /* ms and offset are at most CR_TIME_MAX each: no overflow. */
    return (w->offset_ms + ms) * 1000;
}

/* ---- tracks  * ----------------------------------------------------------- */

typedef struct item {
    const cr_phase *phase;     /* a phase, or */
    const cr_blocker *blocker; /* a blocker (with its phase in phase) */
    int64_t t0, t1;
    size_t group; /* 0: phases; 1..: barriers */
    size_t seq;
    size_t lane;
} item;

/* Tracks per barrier at most, plus one for the overflow. */
#define MAX_LANES 256

typedef struct lane {
    int64_t *ends; /* a stack of enclosing events' ends */
    size_t n, cap;
} lane;

static int by_barrier(const void *x, const void *y)
{
    const item *a = *(const item *const *)x, *b = *(const item *const *)y;
    int c = strcmp(a->blocker->barrier, b->blocker->barrier);
    if (c)
        return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

typedef struct group_first {
    size_t first_seq;
    size_t start, count; /* in the by-barrier order */
} group_first;

static int by_first(const void *x, const void *y)
{
    const group_first *a = x, *b = y;
    return a->first_seq < b->first_seq ? -1 : a->first_seq > b->first_seq;
}

static int by_time(const void *x, const void *y)
{
    const item *a = *(const item *const *)x, *b = *(const item *const *)y;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    if (a->t0 != b->t0)
        return a->t0 < b->t0 ? -1 : 1;
    /* An empty event first: it ends where the others start, beside them
     * rather than inside. Otherwise the longer one encloses. */
    int ea = a->t1 == a->t0, eb = b->t1 == b->t0;
    if (ea != eb)
        return ea ? -1 : 1;
    if (a->t1 != b->t1)
        return a->t1 > b->t1 ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Puts the items of one group (sorted by time) on lanes where they nest
 * properly; returns the number of lanes, 0 when out of memory. */
static size_t assign_lanes(item **v, size_t n)
{
    lane *lanes = NULL;
    size_t nl = 0, cap = 0;
    size_t result = 1;
    int overflow = 0;
    for (size_t i = 0; i < n && result; i++) {
        item *it = v[i];
        size_t L;
        for (L = 0; L < nl; L++) {
            lane *ln = &lanes[L];
            while (ln->n > 0 && ln->ends[ln->n - 1] <= it->t0)
                ln->n--;
            if (ln->n == 0 || ln->ends[ln->n - 1] >= it->t1)
                break;
        }
        if (L == MAX_LANES) {
            /* Pathological overlap: the rest share one last track, where
             * they may overlap partly, rather than costing n * n. */
            it->lane = MAX_LANES;
            overflow = 1;
            continue;
        }
        if (L == nl) {
            if (nl == cap) {
                size_t nc = cap ? cap * 2 : 4;
                lane *nlanes = realloc(lanes, nc * sizeof(lane));
                if (!nlanes) {
                    result = 0;
                    break;
                }
                lanes = nlanes;
                cap = nc;
            }
            lanes[nl++] = (lane){NULL, 0, 0};
        }
        lane *ln = &lanes[L];
        if (ln->n == ln->cap) {
            size_t nc = ln->cap ? ln->cap * 2 : 8;
            int64_t *ne = realloc(ln->ends, nc * sizeof(int64_t));
            if (!ne) {
                result = 0;
                break;
            }
            ln->ends = ne;
            ln->cap = nc;
        }
        ln->ends[ln->n++] = it->t1;
        it->lane = L;
    }
    for (size_t L = 0; L < nl; L++)
        free(lanes[L].ends);
    free(lanes);
    if (!result)
        return 0;
    return overflow ? MAX_LANES + 1 : nl ? nl : 1;
}

static void track_name(char *out, size_t cap, const char *base, size_t ln)
{
    if (ln == MAX_LANES)
        snprintf(out, cap, "%s (overflow)", base);
    else if (ln == 0)
        snprintf(out, cap, "%s", base);
    else
        snprintf(out, cap, "%s (%zu)", base, ln + 1);
}

static const char *phase_state(cr_phase_state s)
{
    return s == CR_PHASE_DONE      ? "done"
           : s == CR_PHASE_RUNNING ? "running"
                                   : "not started";
}

static void put_phase(tw *w, const item *it, int64_t tid)
{
    const cr_phase *p = it->phase;
    int f, a = 1;
    ev_open(w, p->name, "X", us(w, it->t0), tid, &f);
    jkstr(w->out, &f, "cat", "phase");
    jkint(w->out, &f, "dur", (it->t1 - it->t0) * 1000);
    jkey(w->out, &f, "args");
    fputc('{', w->out);
    jkstr(w->out, &a, "state", phase_state(p->state));
    if (!p->has_duration) /* a hang report lists no completed blockers */
        jkint(w->out, &a, "blockers", (int64_t)p->nblockers);
    if (p->has_duration)
        jkint(w->out, &a, "duration_ms", p->duration_ms);
    if (p->has_start)
        jkint(w->out, &a, "start_ms", p->start_ms);
    if (p->has_end)
        jkint(w->out, &a, "end_ms", p->end_ms);
    fputs("}}", w->out);
}

static void put_blocker(tw *w, const item *it, int64_t tid)
{
    const cr_blocker *b = it->blocker;
    int f, a = 1;
    ev_open(w, b->name, "X", us(w, it->t0), tid, &f);
    jkstr(w->out, &f, "cat", "blocker");
    jkint(w->out, &f, "dur", (it->t1 - it->t0) * 1000);
    jkey(w->out, &f, "args");
    fputc('{', w->out);
    jkstr(w->out, &a, "result", cr_result_name(b->result));
    jkstr(w->out, &a, "barrier", b->barrier);
    jkstr(w->out, &a, "phase", it->phase->name);
    if (b->error)
        jkstr(w->out, &a, "error", b->error);
    if (b->has_code)
        jkint(w->out, &a, "code", b->code);
    if (b->status)
        jkstr(w->out, &a, "status", b->status);
    if (b->has_start)
        jkint(w->out, &a, "start_ms", b->start_ms);
    if (b->has_end)
        jkint(w->out, &a, "end_ms", b->end_ms);
    fputs("}}", w->out);
}

static void put_broken(tw *w, const cr_broken *b, int64_t tid)
{
    int f, a = 1;
    char name[64];
    snprintf(name, sizeof name, "broken registration");
    ev_open(w, name, "i", 0, tid, &f);
    jkstr(w->out, &f, "cat", "broken");
    jkstr(w->out, &f, "s", "t");
    jkey(w->out, &f, "args");
    fputc('{', w->out);
    jkstr(w->out, &a, "name", b->name);
    jkstr(w->out, &a, "error", b->error);
    if (b->barrier)
        jkstr(w->out, &a, "barrier", b->barrier);
    jkstr(w->out, &a, "file", b->file);
    jkint(w->out, &a, "line", b->line);
    if (b->function)
        jkstr(w->out, &a, "function", b->function);
    fputs("}}", w->out);
}

/* The instant at a report's "now" (R1), or a record's end when it is not
 * clean. */
static void put_now(tw *w, const cr_model *m)
{
    int f, a = 1;
    const char *what = m->kind == CR_HANG    ? "hang report"
                       : m->kind == CR_STATE ? "state report"
                                             : "record ends (not clean)";
    if (m->kind == CR_RECORD && m->clean)
        return;
    ev_open(w, what, "i", us(w, m->t_end), 1, &f);
    jkstr(w->out, &f, "cat", "report");
    jkstr(w->out, &f, "s", "p");
    jkey(w->out, &f, "args");
    fputc('{', w->out);
    if (m->kind != CR_RECORD) {
        jkstr(w->out, &a, "phase", m->phase);
        jkey(w->out, &a, "barrier_path");
        fputc('[', w->out);
        for (size_t i = 0; i < m->npath; i++) {
            if (i)
                fputc(',', w->out);
            jstr(w->out, m->barrier_path[i]);
        }
        fputc(']', w->out);
        jkint(w->out, &a, "waited_ms", m->wait_ms);
        if (m->has_timeout)
            jkint(w->out, &a, "timeout_ms", m->timeout_ms);
        jkint(w->out, &a, "pending", (int64_t)m->nconditions);
    } else {
        jkint(w->out, &a, "elapsed_ms", m->t_end);
    }
    fputs("}}", w->out);
}

static int64_t valid_pid(int64_t pid, int64_t fallback)
{
    return pid > 0 && pid <= INT32_MAX ? pid : fallback;
}

static int trace_doc(tw *w, const cr_model *m, int depth);

static int trace_children(tw *w, const cr_model *m, int depth)
{
    int64_t parent_pid = w->pid, parent_offset = w->offset_ms;
    int64_t offset = parent_offset;
    for (size_t i = 0; i < m->nphases; i++)
        if (strcmp(m->phases[i].name, "children") == 0 &&
            m->phases[i].state != CR_PHASE_NOT_STARTED)
            offset = parent_offset + m->phases[i].t0;
    int rc = 0;
    for (size_t i = 0; i < m->nchildren && rc == 0; i++) {
        const cr_child *c = &m->children[i];
        if (!c->doc)
            continue;
        int64_t pid = valid_pid(c->pid, 0);
        if (pid == 0 || pid == parent_pid)
            pid = (parent_pid * 31 + (int64_t)i + 1) % INT32_MAX + 1;
        w->pid = pid;
        w->offset_ms = offset;
        rc = trace_doc(w, c->doc, depth + 1);
    }
    w->pid = parent_pid;
    w->offset_ms = parent_offset;
    return rc;
}

static int trace_doc(tw *w, const cr_model *m, int depth)
{
    size_t n = 0, nb = 0;
    for (size_t i = 0; i < m->nphases; i++) {
        const cr_phase *p = &m->phases[i];
        if (p->state != CR_PHASE_NOT_STARTED)
            n++;
        for (size_t j = 0; j < p->nblockers; j++)
            if (p->blockers[j].drawn)
                nb++;
    }
    n += nb;
    item *items = calloc(n ? n : 1, sizeof(item));
    item **v = calloc(n ? n : 1, sizeof(item *));
    group_first *groups = calloc(nb ? nb : 1, sizeof(group_first));
    size_t *lanes = NULL;
    const item **gfirst = NULL;
    int64_t *base = NULL;
    int rc = -ENOMEM;
    if (!items || !v || !groups)
        goto out;

    /* Items: phases first (group 0), then blockers. */
    size_t k = 0, seq = 0;
    for (size_t i = 0; i < m->nphases; i++) {
        const cr_phase *p = &m->phases[i];
        if (p->state != CR_PHASE_NOT_STARTED)
            items[k++] = (item){p, NULL, p->t0, p->t1, 0, seq++, 0};
    }
    size_t nphase_items = k;
    for (size_t i = 0; i < m->nphases; i++) {
        const cr_phase *p = &m->phases[i];
        for (size_t j = 0; j < p->nblockers; j++) {
            const cr_blocker *b = &p->blockers[j];
            if (b->drawn)
                items[k++] = (item){p, b, b->t0, b->t1, 0, seq++, 0};
        }
    }

    /* Groups: one per barrier, numbered in order of first appearance. */
    for (size_t i = 0; i < nb; i++)
        v[i] = &items[nphase_items + i];
    qsort(v, nb, sizeof(item *), by_barrier);
    size_t ng = 0;
    for (size_t i = 0; i < nb; i++) {
        if (i == 0 ||
            strcmp(v[i]->blocker->barrier, v[i - 1]->blocker->barrier) != 0) {
            groups[ng].first_seq = v[i]->seq;
            groups[ng].start = i;
            groups[ng].count = 0;
            ng++;
        }
        groups[ng - 1].count++;
    }
    qsort(groups, ng, sizeof(group_first), by_first);
    for (size_t g = 0; g < ng; g++)
        for (size_t i = 0; i < groups[g].count; i++)
            v[groups[g].start + i]->group = g + 1;

    /* Lanes, group by group. */
    for (size_t i = 0; i < n; i++)
        v[i] = &items[i];
    qsort(v, n, sizeof(item *), by_time);
    lanes = calloc(ng + 1, sizeof(size_t));
    gfirst = calloc(ng + 1, sizeof(item *));
    base = calloc(ng + 1, sizeof(int64_t));
    if (!lanes || !gfirst || !base)
        goto out;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i; j < n && v[j]->group == v[i]->group; j++)
            ;
        gfirst[v[i]->group] = v[i];
        lanes[v[i]->group] = assign_lanes(v + i, j - i);
        if (lanes[v[i]->group] == 0)
            goto out;
    }
    if (lanes[0] == 0)
        lanes[0] = 1;

    /* Metadata: the process and its tracks. tid 1.. are the phase lanes,
     * then each barrier's lanes, then the broken registrations. */
    char pname[512];
    snprintf(pname, sizeof pname, "%s (%s)",
             m->process ? m->process : "(unnamed)", cr_kind_name(m->kind));
    meta(w, "process_name", 0, pname, 0);
    meta(w, "process_sort_index", 0, NULL, depth);
    int64_t tid = 1;
    char tname[600];
    for (size_t g = 0; g <= ng; g++) {
        base[g] = tid;
        const char *gname = "phases";
        char bname[560];
        if (g > 0) {
            snprintf(bname, sizeof bname, "barrier %s",
                     gfirst[g]->blocker->barrier);
            gname = bname;
        }
        for (size_t L = 0; L < lanes[g]; L++) {
            track_name(tname, sizeof tname, gname, L);
            thread_meta(w, tid + (int64_t)L, tname);
        }
        tid += (int64_t)lanes[g];
    }
    int64_t broken_tid = tid;
    if (m->nbroken)
        thread_meta(w, broken_tid, "broken registrations");

    for (size_t i = 0; i < n; i++) {
        const item *it = v[i];
        int64_t t = base[it->group] + (int64_t)it->lane;
        if (it->blocker)
            put_blocker(w, it, t);
        else
            put_phase(w, it, t);
    }
    for (size_t i = 0; i < m->nbroken; i++)
        put_broken(w, &m->broken[i], broken_tid);
    put_now(w, m);
    rc = trace_children(w, m, depth);
out:
    free(base);
    free(gfirst);
    free(lanes);
    free(groups);
    free(v);
    free(items);
    return rc;
}

int cr_trace(FILE *out, const cr_model *m)
{
    tw w = {out, 1, valid_pid(m->pid, 1), 0};
    fputs("{\"traceEvents\":[", out);
    int rc = trace_doc(&w, m, 0);
    if (rc != 0)
        return rc;
    fputs("\n],\"displayTimeUnit\":\"ms\",\"otherData\":{", out);
    int f = 1;
    jkstr(out, &f, "source", "curfew-report");
    jkstr(out, &f, "type", cr_kind_name(m->kind));
    jkstr(out, &f, "process", m->process ? m->process : "");
    if (m->kind == CR_RECORD)
        jkstr(out, &f, "clean", m->clean ? "true" : "false");
    if (m->failure)
        jkstr(out, &f, "failure", m->failure);
    char pid[32];
    snprintf(pid, sizeof pid, "%" PRId64, m->pid);
    jkstr(out, &f, "pid", pid);
    fputs("}}\n", out);
    return ferror(out) ? -EIO : 0;
}
