/* curfew-report svg: the timeline as a standalone SVG 1.1 document (R3).
 *
 * SPDX-License-Identifier: MIT
 *
 * A title, an axis with millisecond ticks, then one row per phase and,
 * under it, its blockers (all of them, or when there are many the slowest
 * and every failed, timed-out and pending one), each bar coloured by
 * result, with the details in a <title> tooltip; a hang or state report
 * has a red line at its "now". A legend and the broken registrations (B5)
 * close it.
 *
 * User strings are XML-escaped (R4): &, <, >, quotes; control characters
 * are shown as "\n" or "\x01" (XML 1.0 forbids most of them), and invalid
 * UTF-8 becomes U+FFFD.
 */
#include "model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 1200.0
#define LABEL_X 10.0
#define PLOT_X0 330.0
#define PLOT_X1 (WIDTH - 110.0)
#define ROW_H 20.0
#define TOP 74.0
#define MAX_ROWS 40    /* blocker rows per phase */
#define LABEL_CHARS 44 /* a label's longest text, in characters */
#define BLOCKER_LABEL_CHARS 42

/* ---- XML text  * --------------------------------------------------------- */

/* Writes s as XML character data or attribute text; at most max code
 * points (0: all), a cut string ending with "...". */
static void xml_text(FILE *out, const char *s, size_t max)
{
    size_t n = strlen(s), shown = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = cr_utf8_next(s + i, n - i, &cp);
        if (max && shown >= max) {
            fputs("...", out);
            return;
        }
        switch (cp) {
        case '&':
            fputs("&amp;", out);
            break;
        case '<':
            fputs("&lt;", out);
            break;
        case '>':
            fputs("&gt;", out);
            break;
        case '"':
            fputs("&quot;", out);
            break;
        case '\'':
            fputs("&apos;", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        default:
            if (cp < 0x20 || cp == 0x7F)
                fprintf(out, "\\x%02x", (unsigned)cp);
            else if ((cp >= 0x80 && cp < 0xA0) || cp == 0xFFFE || cp == 0xFFFF)
                fprintf(out, "\\u%04x", (unsigned)cp);
            else if (cp == 0xFFFD)
                fputs("\xEF\xBF\xBD", out);
            else
                fwrite(s + i, 1, k, out);
        }
        shown++;
        i += k;
    }
}

/* ---- scale  * ------------------------------------------------------------ */

typedef struct sv {
    FILE *out;
    int64_t t_end;
    double y;
} sv;

static double x_of(const sv *g, int64_t t)
{
    if (g->t_end <= 0)
        return PLOT_X0;
    if (t < 0)
        t = 0;
    if (t > g->t_end)
        t = g->t_end;
    return PLOT_X0 + (double)t * (PLOT_X1 - PLOT_X0) / (double)g->t_end;
}

/* A step of 1, 2 or 5 times a power of ten giving at most about 10
 * ticks. */
static int64_t tick_step(int64_t span)
{
    int64_t step = 1;
    for (;;) {
        if (step * 10 >= span)
            return step;
        if (step * 2 * 10 >= span)
            return step * 2;
        if (step * 5 * 10 >= span)
            return step * 5;
        step *= 10;
    }
}

static const char *fill_of(cr_result r)
{
    switch (r) {
    case CR_OK:
        return "#43a047";
    case CR_ERROR:
        return "#e53935";
    case CR_TIMEOUT:
        return "#fb8c00";
    case CR_REMOVED:
        return "#bdbdbd";
    case CR_PENDING:
        return "#5c6bc0";
    }
    return "#000000";
}

/* ---- rows  * ------------------------------------------------------------- */

typedef struct row_pick {
    const cr_blocker *b;
    size_t index;
} row_pick;

static int by_slow(const void *x, const void *y)
{
    const row_pick *a = x, *b = y;
    int ap = a->b->result != CR_OK && a->b->result != CR_REMOVED;
    int bp = b->b->result != CR_OK && b->b->result != CR_REMOVED;
    if (ap != bp)
        return ap ? -1 : 1; /* problems first */
    int64_t da = a->b->t1 - a->b->t0, db = b->b->t1 - b->b->t0;
    if (da != db)
        return da > db ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static int by_start(const void *x, const void *y)
{
    const row_pick *a = x, *b = y;
    if (a->b->t0 != b->b->t0)
        return a->b->t0 < b->b->t0 ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* The blockers of p drawn as rows, in order of start; *more gets how many
 * are left out. NULL with *n == 0 when there are none; -ENOMEM in *rc. */
static row_pick *pick_rows(const cr_phase *p, size_t *n, size_t *more, int *rc)
{
    *n = 0;
    *more = 0;
    *rc = 0;
    size_t drawn = 0;
    for (size_t i = 0; i < p->nblockers; i++)
        drawn += p->blockers[i].drawn != 0;
    if (drawn == 0)
        return NULL;
    row_pick *v = malloc(drawn * sizeof(row_pick));
    if (!v) {
        *rc = -ENOMEM;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < p->nblockers; i++)
        if (p->blockers[i].drawn)
            v[k++] = (row_pick){&p->blockers[i], i};
    if (k > MAX_ROWS) {
        qsort(v, k, sizeof(row_pick), by_slow);
        *more = k - MAX_ROWS;
        k = MAX_ROWS;
    }
    qsort(v, k, sizeof(row_pick), by_start);
    *n = k;
    return v;
}

static void tooltip_blocker(FILE *out, const cr_blocker *b)
{
    fputs("<title>", out);
    xml_text(out, b->name, 0);
    fputs("\nbarrier: ", out);
    xml_text(out, b->barrier, 0);
    fprintf(out, "\nresult: %s\n%" PRId64 " to %" PRId64 " ms (%" PRId64 " ms)",
            cr_result_name(b->result), b->t0, b->t1, b->t1 - b->t0);
    if (b->error) {
        fputs("\nerror: ", out);
        xml_text(out, b->error, 0);
    }
    if (b->status) {
        fputs("\nstatus: ", out);
        xml_text(out, b->status, 0);
    }
    fputs("</title>", out);
}

static void draw_blocker(sv *g, const cr_phase *p, const cr_blocker *b)
{
    FILE *out = g->out;
    double x0 = x_of(g, b->t0), x1 = x_of(g, b->t1);
    double w = x1 - x0 < 1.5 ? 1.5 : x1 - x0;
    fprintf(out, "<g class=\"blocker %s\">", cr_result_name(b->result));
    tooltip_blocker(out, b);
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"label\">", LABEL_X + 14,
            g->y + 14);
    if (strcmp(b->barrier, p->name) != 0) {
        xml_text(out, b->barrier, 16);
        fputs(": ", out);
    }
    xml_text(out, b->name, BLOCKER_LABEL_CHARS);
    fputs("</text>", out);
    fprintf(out,
            "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"10\" "
            "fill=\"%s\"%s/>",
            x0, g->y + 5, w, fill_of(b->result),
            b->result == CR_PENDING
                ? " fill-opacity=\"0.6\" stroke=\"#283593\" "
                  "stroke-dasharray=\"3,2\""
                : "");
    const char *mark = b->result == CR_ERROR     ? " failed"
                       : b->result == CR_TIMEOUT ? " timeout"
                       : b->result == CR_PENDING ? " pending"
                       : b->result == CR_REMOVED ? " removed"
                                                 : "";
    fprintf(out,
            "<text x=\"%.2f\" y=\"%.1f\" class=\"dur\">%" PRId64
            " ms%s</text></g>\n",
            x0 + w + 4, g->y + 14, b->t1 - b->t0, mark);
    g->y += ROW_H;
}

static void draw_phase(sv *g, const cr_phase *p)
{
    FILE *out = g->out;
    fputs("<g class=\"phase\"><title>phase ", out);
    xml_text(out, p->name, 0);
    if (p->state == CR_PHASE_NOT_STARTED)
        fputs("\nnot started", out);
    else
        fprintf(out, "\n%" PRId64 " to %" PRId64 " ms (%" PRId64 " ms)%s",
                p->t0, p->t1, p->t1 - p->t0,
                p->state == CR_PHASE_RUNNING ? ", running" : "");
    fprintf(out, "\n%zu blockers</title>", p->nblockers);
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"phase-label\">", LABEL_X,
            g->y + 15);
    xml_text(out, p->name, LABEL_CHARS);
    fputs("</text>", out);
    if (p->state == CR_PHASE_NOT_STARTED) {
        fprintf(out,
                "<text x=\"%.1f\" y=\"%.1f\" class=\"dur\">not "
                "started</text>",
                PLOT_X0, g->y + 15);
    } else {
        double x0 = x_of(g, p->t0), x1 = x_of(g, p->t1);
        double w = x1 - x0 < 1.5 ? 1.5 : x1 - x0;
        fprintf(out,
                "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"16\" "
                "fill=\"#37474f\"%s/>",
                x0, g->y + 2, w,
                p->state == CR_PHASE_RUNNING
                    ? " fill-opacity=\"0.55\" stroke=\"#37474f\" "
                      "stroke-dasharray=\"4,2\""
                    : "");
        fprintf(out,
                "<text x=\"%.2f\" y=\"%.1f\" class=\"dur\">%" PRId64
                " ms%s</text>",
                x0 + w + 4, g->y + 15, p->t1 - p->t0,
                p->state == CR_PHASE_RUNNING ? " running" : "");
    }
    fputs("</g>\n", out);
    g->y += ROW_H + 2;
}

/* ---- the document  * ----------------------------------------------------- */

static void title_line(sv *g, const cr_model *m)
{
    FILE *out = g->out;
    fprintf(out, "<text x=\"%.1f\" y=\"24\" class=\"title\">%s: ", LABEL_X,
            cr_kind_name(m->kind));
    if (m->process) {
        fputs("process \"", out);
        xml_text(out, m->process, 60);
        fputs("\"", out);
    } else {
        fputs("unnamed process", out);
    }
    fprintf(out, ", pid %" PRId64 "</text>\n", m->pid);
    fprintf(out, "<text x=\"%.1f\" y=\"44\" class=\"sub\">", LABEL_X);
    if (m->kind == CR_RECORD) {
        fprintf(out, "%s shutdown, %" PRId64 " ms",
                m->clean ? "clean" : "NOT CLEAN", m->t_end);
        if (m->failure) {
            fputs(", failed: ", out);
            xml_text(out, m->failure, 80);
        }
        if (m->exit_after) {
            fputs(", fast exit after ", out);
            xml_text(out, m->exit_after, 40);
        }
    } else {
        fputs(m->kind == CR_HANG ? "hung in phase " : "in phase ", out);
        xml_text(out, m->phase ? m->phase : "(none)", 40);
        if (m->npath) {
            fputs(", barrier ", out);
            for (size_t i = 0; i < m->npath; i++) {
                if (i)
                    fputs(" &gt; ", out);
                xml_text(out, m->barrier_path[i], 30);
            }
            fprintf(out, ": waited %" PRId64 " ms", m->wait_ms);
            if (m->has_timeout)
                fprintf(out, " (timeout %" PRId64 " ms)", m->timeout_ms);
        }
        fprintf(out, ", %zu pending", m->nconditions);
    }
    fputs("</text>\n", out);
}

static void axis(sv *g, double bottom)
{
    FILE *out = g->out;
    double y = TOP - 8;
    fprintf(out,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
            "stroke=\"#424242\"/>\n",
            PLOT_X0, y, PLOT_X1, y);
    int64_t span = g->t_end > 0 ? g->t_end : 1;
    int64_t step = tick_step(span);
    for (int64_t t = 0; t <= span; t += step) {
        double x = g->t_end > 0 ? x_of(g, t) : PLOT_X0;
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" "
                "class=\"grid\"/><text x=\"%.2f\" y=\"%.1f\" "
                "class=\"tick\">%" PRId64 " ms</text>\n",
                x, y - 4, x, bottom, x, y - 8, t);
        if (g->t_end <= 0)
            break;
    }
}

static void legend(sv *g)
{
    static const struct {
        const char *fill, *what;
    } items[] = {{"#37474f", "phase"},   {"#43a047", "ok"},
                 {"#e53935", "failed"},  {"#fb8c00", "timed out"},
                 {"#5c6bc0", "pending"}, {"#bdbdbd", "removed"}};
    double x = LABEL_X;
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        fprintf(g->out,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" "
                "fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\" "
                "class=\"label\">%s</text>\n",
                x, g->y + 4, items[i].fill, x + 16, g->y + 14, items[i].what);
        x += 110;
    }
    g->y += ROW_H + 6;
}

static void broken_rows(sv *g, const cr_model *m)
{
    FILE *out = g->out;
    if (m->nbroken == 0)
        return;
    fprintf(out,
            "<text x=\"%.1f\" y=\"%.1f\" class=\"phase-label\">broken "
            "registrations (%zu)</text>\n",
            LABEL_X, g->y + 14, m->nbroken);
    g->y += ROW_H;
    for (size_t i = 0; i < m->nbroken; i++) {
        const cr_broken *b = &m->broken[i];
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"label\">\"",
                LABEL_X + 14, g->y + 14);
        xml_text(out, b->name, 60);
        fputs("\"", out);
        if (b->barrier) {
            fputs(" on ", out);
            xml_text(out, b->barrier, 40);
        }
        fputs(": ", out);
        xml_text(out, b->error, 60);
        fputs(" at ", out);
        xml_text(out, b->file ? b->file : "(unknown file)", 60);
        fprintf(out, ":%" PRId64 "</text>\n", b->line);
        g->y += ROW_H;
    }
}

/* Children's reports (P6): one line each. */
static void child_rows(sv *g, const cr_model *m)
{
    FILE *out = g->out;
    if (m->nchildren == 0)
        return;
    fprintf(out,
            "<text x=\"%.1f\" y=\"%.1f\" class=\"phase-label\">children "
            "(%zu)</text>\n",
            LABEL_X, g->y + 14, m->nchildren);
    g->y += ROW_H;
    for (size_t i = 0; i < m->nchildren; i++) {
        const cr_child *c = &m->children[i];
        fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" class=\"label\">",
                LABEL_X + 14, g->y + 14);
        xml_text(out, c->process ? c->process : "(unnamed)", 60);
        if (c->has_pid)
            fprintf(out, ", pid %" PRId64, c->pid);
        if (c->doc) {
            fprintf(out, ": %s", cr_kind_name(c->doc->kind));
            if (c->doc->phase) {
                fputs(" in phase ", out);
                xml_text(out, c->doc->phase, 40);
            }
            if (c->doc->kind != CR_RECORD)
                fprintf(out, ", %zu pending", c->doc->nconditions);
        } else if (c->error) {
            fputs(": unreadable report: ", out);
            xml_text(out, c->error, 80);
        }
        fputs("</text>\n", out);
        g->y += ROW_H;
    }
}

int cr_svg(FILE *out, const cr_model *m)
{
    sv g = {out, m->t_end, TOP};
    int rc = 0;

    /* Rows first, to know the height. */
    row_pick **rows = calloc(m->nphases ? m->nphases : 1, sizeof(*rows));
    size_t *nrows = calloc(m->nphases ? m->nphases : 1, sizeof(size_t));
    size_t *more = calloc(m->nphases ? m->nphases : 1, sizeof(size_t));
    if (!rows || !nrows || !more) {
        rc = -ENOMEM;
        goto out;
    }
    double h = TOP;
    for (size_t i = 0; i < m->nphases; i++) {
        rows[i] = pick_rows(&m->phases[i], &nrows[i], &more[i], &rc);
        if (rc)
            goto out;
        h += ROW_H + 2 + (double)nrows[i] * ROW_H + (more[i] ? ROW_H : 0);
    }
    double plot_bottom = h;
    h += 12 + ROW_H + 6;
    if (m->nbroken)
        h += ROW_H * (double)(m->nbroken + 1);
    if (m->nchildren)
        h += ROW_H * (double)(m->nchildren + 1);
    h += 10;

    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
          "<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" "
          "\"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n",
          out);
    fprintf(out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
            "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n",
            WIDTH, h, WIDTH, h);
    fputs("<style type=\"text/css\"><![CDATA[\n"
          "text { font-family: sans-serif; font-size: 12px; fill: #212121; }\n"
          ".title { font-size: 16px; font-weight: bold; }\n"
          ".sub { font-size: 13px; }\n"
          ".phase-label { font-weight: bold; }\n"
          ".tick { font-size: 10px; text-anchor: middle; fill: #616161; }\n"
          ".dur { font-size: 10px; fill: #424242; }\n"
          ".grid { stroke: #e0e0e0; stroke-width: 1; }\n"
          "]]></style>\n",
          out);
    fprintf(out,
            "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
            "fill=\"#ffffff\"/>\n",
            WIDTH, h);
    title_line(&g, m);
    axis(&g, plot_bottom);

    for (size_t i = 0; i < m->nphases; i++) {
        const cr_phase *p = &m->phases[i];
        draw_phase(&g, p);
        for (size_t j = 0; j < nrows[i]; j++)
            draw_blocker(&g, p, rows[i][j].b);
        if (more[i]) {
            fprintf(out,
                    "<text x=\"%.1f\" y=\"%.1f\" class=\"label\">... %zu "
                    "more blockers</text>\n",
                    LABEL_X + 14, g.y + 14, more[i]);
            g.y += ROW_H;
        }
    }
    if (m->kind != CR_RECORD) {
        double x = x_of(&g, m->t_end);
        fprintf(out,
                "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" "
                "stroke=\"#d50000\" stroke-width=\"1.5\"/><text x=\"%.2f\" "
                "y=\"%.1f\" class=\"tick\" style=\"fill: #d50000\">%s</text>\n",
                x, TOP - 8, x, plot_bottom, x, plot_bottom + 10,
                m->kind == CR_HANG ? "hang report" : "state report");
    }
    g.y = plot_bottom + 12;
    legend(&g);
    broken_rows(&g, m);
    child_rows(&g, m);
    fputs("</svg>\n", out);
out:
    if (rows)
        for (size_t i = 0; i < m->nphases; i++)
            free(rows[i]);
    free(rows);
    free(nrows);
    free(more);
    if (rc == 0 && ferror(out))
        rc = -EIO;
    return rc;
}
