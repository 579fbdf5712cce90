/* curfew-report show: a timeline in the terminal (R3).
 *
 * SPDX-License-Identifier: MIT
 *
 * One row per phase, its bar scaled to the width; under it the phase's
 * slowest blockers (top 5) and every failed, timed-out or pending one (up
 * to a limit), each with a bar of its own on the same scale; then the
 * broken registrations (B5) and the children's reports (P6). A hang or
 * state report first names the phase, the barrier path and each pending
 * condition with its status, call site and age (R1).
 *
 * User strings are printed with control characters escaped ("\n",
 * "\x1b"), so a name cannot move the cursor or forge a line.
 */
#include "model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TOP_SLOWEST 5
#define MAX_PROBLEMS 20
#define MAX_CONDITIONS 50
#define MAX_CHILD_CONDITIONS 5

/* ---- a line buffer that counts columns  * -------------------------------- */

typedef struct line {
    char *buf;
    size_t len, cap;
    size_t cols; /* code points so far: the display width, roughly */
    int oom;
} line;

static void put_bytes(line *l, const char *s, size_t n, size_t cols)
{
    if (l->oom)
        return;
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->len + n + 1)
            cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b) {
            l->oom = 1;
            return;
        }
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
    l->cols += cols;
}

static void put(line *l, const char *s)
{
    put_bytes(l, s, strlen(s), strlen(s));
}

static void putf(line *l, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof tmp)
        n = sizeof tmp - 1;
    put_bytes(l, tmp, (size_t)n, (size_t)n);
}

static void put_rep(line *l, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_bytes(l, &c, 1, 1);
}

/* How a code point is shown: escaped into esc (returns its length) or, for
 * 0, as itself. */
static size_t escape_of(uint32_t cp, char esc[12], int quoted)
{
    if (quoted && (cp == '"' || cp == '\\'))
        return (size_t)snprintf(esc, 12, "\\%c", (char)cp);
    if (cp == '\n')
        return (size_t)snprintf(esc, 12, "\\n");
    if (cp == '\t')
        return (size_t)snprintf(esc, 12, "\\t");
    if (cp == '\r')
        return (size_t)snprintf(esc, 12, "\\r");
    if (cp < 0x20 || cp == 0x7F)
        return (size_t)snprintf(esc, 12, "\\x%02x", (unsigned)cp);
    if (cp >= 0x80 && cp < 0xA0)
        return (size_t)snprintf(esc, 12, "\\u%04x", (unsigned)cp);
    return 0;
}

static size_t shown_width(const char *s, int quoted)
{
    size_t n = strlen(s), w = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        char esc[12];
        i += cr_utf8_next(s + i, n - i, &cp);
        size_t e = escape_of(cp, esc, quoted);
        w += e ? e : 1;
    }
    return w;
}

/* A user string, at most max columns (0: no limit), control characters
 * escaped, and also quotes and backslashes when quoted (the string then
 * stands between quotes); a cut string ends with "..". */
static void put_user(line *l, const char *s, size_t max, int quoted)
{
    size_t n = strlen(s), used = 0;
    int cut = max && shown_width(s, quoted) > max;
    size_t room = cut ? (max > 2 ? max - 2 : 0) : SIZE_MAX;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        char esc[12];
        size_t k = cr_utf8_next(s + i, n - i, &cp);
        size_t e = escape_of(cp, esc, quoted);
        size_t w = e ? e : 1;
        if (used + w > room)
            break;
        if (e)
            put_bytes(l, esc, e, e);
        else
            put_bytes(l, s + i, k, 1);
        used += w;
        i += k;
    }
    if (cut)
        put(l, max > 2 ? ".." : "");
}

/* Prints the line, cut to width columns when width > 0. */
static void flush_line(FILE *out, line *l, size_t width)
{
    size_t bytes = l->len;
    if (width && l->cols > width) {
        size_t cols = 0, i = 0;
        while (i < l->len && cols < width) {
            uint32_t cp;
            i += cr_utf8_next(l->buf + i, l->len - i, &cp);
            cols++;
        }
        bytes = i;
    }
    if (!l->oom) {
        /* Trailing blanks carry nothing. */
        while (bytes > 0 && l->buf[bytes - 1] == ' ')
            bytes--;
        fwrite(l->buf, 1, bytes, out);
    }
    fputc('\n', out);
    l->len = 0;
    l->cols = 0;
    if (l->buf)
        l->buf[0] = '\0';
}

/* ---- layout  * ----------------------------------------------------------- */

typedef struct layout {
    FILE *out;
    line l;
    size_t width;  /* columns */
    size_t label;  /* label column */
    size_t bar;    /* bar columns between '|' and '|' */
    int64_t t_end; /* ms at the bar's right end */
    int oom;
} layout;

static size_t col_of(const layout *y, int64_t t)
{
    if (y->t_end <= 0 || t <= 0)
        return 0;
    if (t >= y->t_end)
        return y->bar;
    /* t < t_end <= CR_TIME_MAX and bar <= 1000: no overflow. */
    return (size_t)((t * (int64_t)y->bar) / y->t_end);
}

static void put_bar(layout *y, int64_t t0, int64_t t1, char glyph, int drawn)
{
    line *l = &y->l;
    put(l, "|");
    if (!drawn) {
        put_rep(l, ' ', y->bar);
    } else {
        size_t a = col_of(y, t0), b = col_of(y, t1);
        if (a >= y->bar)
            a = y->bar - 1;
        if (b <= a)
            b = a + 1;
        put_rep(l, ' ', a);
        put_rep(l, glyph, b - a);
        put_rep(l, ' ', y->bar - b);
    }
    put(l, "|");
}

/* The label column: indent, then "barrier > " when given, then name. */
static void put_label(layout *y, const char *indent, const char *barrier,
                      const char *name)
{
    size_t start = y->l.cols;
    put(&y->l, indent);
    size_t room = y->label - strlen(indent);
    if (barrier) {
        size_t bw = room / 2 < 12 ? room / 2 : 12;
        size_t before = y->l.cols;
        put_user(&y->l, barrier, bw, 0);
        put(&y->l, " > ");
        size_t used = y->l.cols - before;
        room = used < room ? room - used : 0;
    }
    put_user(&y->l, name, room ? room : 1, 0);
    size_t used = y->l.cols - start;
    put_rep(&y->l, ' ', used < y->label ? y->label - used : 0);
    put(&y->l, " ");
}

static void emit(layout *y, int cut)
{
    if (y->l.oom)
        y->oom = 1;
    flush_line(y->out, &y->l, cut ? y->width : 0);
}

static char glyph_of(cr_result r)
{
    switch (r) {
    case CR_OK:
        return '=';
    case CR_ERROR:
        return 'X';
    case CR_TIMEOUT:
        return '!';
    case CR_REMOVED:
        return '-';
    case CR_PENDING:
        return '~';
    }
    return '?';
}

static const char *mark_of(cr_result r)
{
    switch (r) {
    case CR_OK:
        return "ok";
    case CR_ERROR:
        return "FAILED";
    case CR_TIMEOUT:
        return "TIMEOUT";
    case CR_REMOVED:
        return "removed";
    case CR_PENDING:
        return "PENDING";
    }
    return "?";
}

static int64_t dur(const cr_blocker *b)
{
    return b->drawn ? b->t1 - b->t0 : -1;
}

/* ---- phases and blockers  * ---------------------------------------------- */

typedef struct pick {
    const cr_blocker *b;
    size_t index;
} pick;

static int by_duration(const void *x, const void *y)
{
    const pick *a = x, *b = y;
    int64_t da = dur(a->b), db = dur(b->b);
    if (da != db)
        return da > db ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int is_problem(cr_result r)
{
    return r == CR_ERROR || r == CR_TIMEOUT || r == CR_PENDING;
}

static void show_blocker(layout *y, const cr_phase *p, const cr_blocker *b)
{
    put_label(y, "  ", strcmp(b->barrier, p->name) != 0 ? b->barrier : NULL,
              b->name);
    put_bar(y, b->t0, b->t1, glyph_of(b->result), b->drawn);
    if (b->drawn)
        putf(&y->l, " %6" PRId64 " ms", b->t1 - b->t0);
    else
        put(&y->l, "          ");
    putf(&y->l, " %s", mark_of(b->result));
    emit(y, 1);
    if (b->result == CR_ERROR || b->error) {
        put(&y->l, "      error: ");
        put_user(&y->l, b->error ? b->error : "(no text)", 0, 0);
        emit(y, 0);
    }
    if (b->status && (is_problem(b->result) || b->result == CR_REMOVED)) {
        put(&y->l, "      status: ");
        put_user(&y->l, b->status, 0, 0);
        emit(y, 0);
    }
}

static int show_phase(layout *y, const cr_phase *p)
{
    put_label(y, "", NULL, p->name);
    put_bar(y, p->t0, p->t1, '#', p->state != CR_PHASE_NOT_STARTED);
    if (p->state == CR_PHASE_NOT_STARTED)
        put(&y->l, "        not started");
    else
        putf(&y->l, " %6" PRId64 " ms%s", p->t1 - p->t0,
             p->state == CR_PHASE_RUNNING ? " RUNNING" : "");
    emit(y, 1);
    if (p->nblockers == 0)
        return 0;
    if (p->state == CR_PHASE_NOT_STARTED) {
        putf(&y->l, "  ... %zu blocker%s, not started", p->nblockers,
             p->nblockers == 1 ? "" : "s");
        emit(y, 0);
        return 0;
    }

    /* The slowest few, then every problem up to a limit. */
    pick *all = malloc(p->nblockers * sizeof(pick));
    if (!all)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < p->nblockers; i++)
        all[n++] = (pick){&p->blockers[i], i};
    qsort(all, n, sizeof(pick), by_duration);
    size_t shown = 0, problems = 0;
    size_t counts[5] = {0};
    for (size_t i = 0; i < n; i++) {
        const cr_blocker *b = all[i].b;
        int want = i < TOP_SLOWEST && b->drawn;
        if (!want && is_problem(b->result)) {
            if (problems < MAX_PROBLEMS) {
                want = 1;
                problems++;
            }
        }
        if (want) {
            show_blocker(y, p, b);
            shown++;
        } else {
            counts[b->result]++;
        }
    }
    free(all);
    if (shown < n) {
        putf(&y->l, "  ... %zu more:", n - shown);
        static const char *const what[] = {"ok", "failed", "timed out",
                                           "removed", "pending"};
        const char *sep = " ";
        for (int r = 0; r < 5; r++) {
            if (!counts[r])
                continue;
            putf(&y->l, "%s%zu %s", sep, counts[r], what[r]);
            sep = ", ";
        }
        emit(y, 0);
    }
    return 0;
}

static void show_scale(layout *y)
{
    put_rep(&y->l, ' ', y->label + 1);
    char right[32];
    int rn = snprintf(right, sizeof right, "%" PRId64 " ms", y->t_end);
    put(&y->l, " 0 ms");
    size_t used = 5;
    size_t want = y->bar + 2;
    if (used + (size_t)rn < want)
        put_rep(&y->l, ' ', want - used - (size_t)rn);
    else
        put(&y->l, " ");
    put(&y->l, right);
    emit(y, 1);
}

static void show_legend(layout *y)
{
    put(&y->l, "bars: # phase  = ok  X failed  ! timed out  ~ pending  - "
               "removed");
    emit(y, 0);
}

/* ---- the document  * ----------------------------------------------------- */

static void show_header(layout *y, const cr_model *m)
{
    putf(&y->l, "%s: process ", cr_kind_name(m->kind));
    if (m->process) {
        put(&y->l, "\"");
        put_user(&y->l, m->process, 0, 1);
        put(&y->l, "\"");
    } else {
        put(&y->l, "(unnamed)");
    }
    putf(&y->l, ", pid %" PRId64, m->pid);
    emit(y, 0);
}

static void show_record_summary(layout *y, const cr_model *m)
{
    const cr_phase *last = NULL;
    for (size_t i = 0; i < m->nphases; i++)
        if (m->phases[i].state != CR_PHASE_NOT_STARTED)
            last = &m->phases[i];
    if (m->clean) {
        putf(&y->l, "shutdown: clean, %" PRId64 " ms", m->t_end);
        if (m->exit_after) {
            put(&y->l, " (fast exit after ");
            put_user(&y->l, m->exit_after, 0, 0);
            put(&y->l, ")");
        }
    } else {
        put(&y->l, "shutdown: NOT CLEAN");
        if (m->failure) {
            put(&y->l, ": failed: ");
            put_user(&y->l, m->failure, 0, 0);
            putf(&y->l, " (%" PRId64 " ms)", m->t_end);
        } else {
            if (last) {
                put(&y->l, ": stopped in phase \"");
                put_user(&y->l, last->name, 0, 1);
                put(&y->l, "\"");
            } else {
                put(&y->l, ": no phase began");
            }
            putf(&y->l, " after %" PRId64 " ms", m->t_end);
        }
    }
    emit(y, 0);
}

static int by_age(const void *x, const void *y)
{
    const cr_condition *a = *(const cr_condition *const *)x;
    const cr_condition *b = *(const cr_condition *const *)y;
    if (a->age_ms != b->age_ms)
        return a->age_ms > b->age_ms ? -1 : 1;
    return a < b ? -1 : a > b;
}

static void put_site(line *l, const cr_condition *c)
{
    put(l, "at ");
    put_user(l, c->file ? c->file : "(unknown file)", 0, 0);
    putf(l, ":%" PRId64, c->line);
    if (c->function) {
        put(l, " in ");
        put_user(l, c->function, 0, 0);
        put(l, "()");
    }
}

static int show_conditions(layout *y, const cr_model *m, size_t limit,
                           const char *indent)
{
    putf(&y->l, "%spending conditions (%zu)%s", indent, m->nconditions,
         m->nconditions ? ", oldest first:" : "");
    emit(y, 0);
    if (m->nconditions == 0)
        return 0;
    const cr_condition **v = malloc(m->nconditions * sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < m->nconditions; i++)
        v[i] = &m->conditions[i];
    qsort(v, m->nconditions, sizeof(*v), by_age);
    for (size_t i = 0; i < m->nconditions && i < limit; i++) {
        const cr_condition *c = v[i];
        putf(&y->l, "%s  ", indent);
        put_user(&y->l, c->name, 0, 0);
        putf(&y->l, "  (age %" PRId64 " ms, barrier ", c->age_ms);
        put_user(&y->l, c->barrier, 0, 0);
        put(&y->l, ")");
        emit(y, 0);
        if (c->status[0]) {
            putf(&y->l, "%s      status: ", indent);
            put_user(&y->l, c->status, 0, 0);
            emit(y, 0);
        }
        putf(&y->l, "%s      ", indent);
        put_site(&y->l, c);
        emit(y, 0);
    }
    if (m->nconditions > limit) {
        putf(&y->l, "%s  ... %zu more", indent, m->nconditions - limit);
        emit(y, 0);
    }
    free(v);
    return 0;
}

static void show_where(layout *y, const cr_model *m, const char *indent)
{
    put(&y->l, indent);
    put(&y->l, m->kind == CR_HANG ? "hung in phase " : "in phase ");
    if (m->phase) {
        put(&y->l, "\"");
        put_user(&y->l, m->phase, 0, 1);
        put(&y->l, "\"");
    } else {
        put(&y->l, "(none: shutdown not begun)");
    }
    emit(y, 0);
    put(&y->l, indent);
    if (m->npath == 0) {
        put(&y->l, "no barrier waiting");
    } else {
        put(&y->l, "barrier ");
        for (size_t i = 0; i < m->npath; i++) {
            if (i)
                put(&y->l, " > ");
            put_user(&y->l, m->barrier_path[i], 0, 0);
        }
        putf(&y->l, ": waited %" PRId64 " ms", m->wait_ms);
        if (m->has_timeout)
            putf(&y->l, " (timeout %" PRId64 " ms)", m->timeout_ms);
        else
            put(&y->l, " (no timeout)");
    }
    emit(y, 0);
}

static void show_broken(layout *y, const cr_model *m)
{
    if (m->nbroken == 0)
        return;
    putf(&y->l, "broken registrations (%zu):", m->nbroken);
    emit(y, 0);
    for (size_t i = 0; i < m->nbroken; i++) {
        const cr_broken *b = &m->broken[i];
        put(&y->l, "  \"");
        put_user(&y->l, b->name, 0, 1);
        put(&y->l, "\"");
        if (b->barrier) {
            put(&y->l, " on ");
            put_user(&y->l, b->barrier, 0, 0);
        }
        put(&y->l, ": ");
        put_user(&y->l, b->error, 0, 0);
        put(&y->l, ", at ");
        put_user(&y->l, b->file ? b->file : "(unknown file)", 0, 0);
        putf(&y->l, ":%" PRId64, b->line);
        if (b->function) {
            put(&y->l, " in ");
            put_user(&y->l, b->function, 0, 0);
            put(&y->l, "()");
        }
        emit(y, 0);
    }
}

/* Children's reports (P6), and theirs in turn, each level indented by
 * four more columns (the loader bounds the depth). */
static int show_children(layout *y, const cr_model *m, size_t level)
{
    if (m->nchildren == 0)
        return 0;
    char ind[64];
    size_t w = level * 4 < sizeof ind - 5 ? level * 4 : sizeof ind - 5;
    memset(ind, ' ', w);
    ind[w] = '\0';
    char sub[64];
    memset(sub, ' ', w + 4);
    sub[w + 4] = '\0';
    putf(&y->l, "%schildren (%zu):", ind, m->nchildren);
    emit(y, 0);
    for (size_t i = 0; i < m->nchildren; i++) {
        const cr_child *c = &m->children[i];
        putf(&y->l, "%s  child ", ind);
        if (c->process) {
            put(&y->l, "\"");
            put_user(&y->l, c->process, 0, 1);
            put(&y->l, "\"");
        } else {
            put(&y->l, "(unnamed)");
        }
        if (c->has_pid)
            putf(&y->l, ", pid %" PRId64, c->pid);
        if (c->doc)
            putf(&y->l, ": %s", cr_kind_name(c->doc->kind));
        if (c->error) {
            put(&y->l, ": unreadable report: ");
            put_user(&y->l, c->error, 0, 0);
        }
        emit(y, 0);
        if (!c->doc)
            continue;
        if (c->doc->kind != CR_RECORD) {
            show_where(y, c->doc, sub);
            int rc = show_conditions(y, c->doc, MAX_CHILD_CONDITIONS, sub);
            if (rc)
                return rc;
        }
        int rc = show_children(y, c->doc, level + 1);
        if (rc)
            return rc;
    }
    return 0;
}

int cr_show(FILE *out, const cr_model *m, int width)
{
    layout y;
    memset(&y, 0, sizeof y);
    y.out = out;
    if (width < 40)
        width = 40;
    if (width > 1000)
        width = 1000;
    y.width = (size_t)width;
    /* label | bar | " 123456 ms TIMEOUT [barrier]" */
    y.label = y.width / 4;
    if (y.label > 30)
        y.label = 30;
    y.bar = y.width - y.label - 1 - 2 - 19;
    y.t_end = m->t_end;

    int rc = 0;
    show_header(&y, m);
    if (m->kind == CR_RECORD) {
        show_record_summary(&y, m);
    } else {
        show_where(&y, m, "");
        rc = show_conditions(&y, m, MAX_CONDITIONS, "");
        if (m->nphases) {
            put(&y.l, "phases (completed ones laid end to end; the running "
                      "one ends at the report):");
            emit(&y, 0);
        }
    }
    if (m->nphases) {
        emit(&y, 0);
        show_scale(&y);
    }
    for (size_t i = 0; i < m->nphases && rc == 0; i++)
        rc = show_phase(&y, &m->phases[i]);
    if (m->nphases) {
        emit(&y, 0);
        show_legend(&y);
    }
    show_broken(&y, m);
    if (rc == 0)
        rc = show_children(&y, m, 0);
    if (m->nsections) {
        put(&y.l, "other sections (in the file):");
        for (size_t i = 0; i < m->nsections; i++) {
            put(&y.l, i ? ", " : " ");
            put_user(&y.l, m->sections[i], 0, 0);
        }
        emit(&y, 0);
    }
    free(y.l.buf);
    if (rc == 0 && y.oom)
        rc = -ENOMEM;
    if (rc == 0 && ferror(out))
        rc = -EIO;
    return rc;
}
