/* curfew-report: loading a record (R2), hang report (R1) or state report
 * into a model, and the timeline derived from it (R3).
 *
 * SPDX-License-Identifier: MIT
 *
 * Every field the tool uses is checked for presence and type; a problem
 * gives -EPROTO and one line naming the field by its path
 * ("phases[2].blockers[0].result: ..."), never a crash (R3). Fields the
 * contract names are required; the few the library adds beyond it
 * ("code", "status", "function", a record's "elapsed_ms" and "children")
 * are optional but still type-checked when present. Times and ages are
 * limited to +-CR_TIME_MAX so that no sum or conversion overflows.
 */
#include "model.h"

#include "report/jsonr.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- arena --------------------------------------------------------------- */

typedef struct cr_chunk {
    struct cr_chunk *next;
    size_t used, cap;
    /* max_align_t keeps what follows aligned for any type. */
    max_align_t data[];
} cr_chunk;

struct cr_arena {
    cr_chunk *head;
};

#define CHUNK_BYTES ((size_t)64 * 1024)

static void *arena_alloc(struct cr_arena *a, size_t size)
{
    const size_t align = sizeof(max_align_t);
    if (size > SIZE_MAX / 2)
        return NULL;
    size = (size + align - 1) / align * align;
    if (size == 0)
        size = align;
    cr_chunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > CHUNK_BYTES ? size : CHUNK_BYTES;
        c = malloc(sizeof(cr_chunk) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += size;
    return p;
}

static void *arena_array(struct cr_arena *a, size_t n, size_t size)
{
    if (n != 0 && size > SIZE_MAX / 4 / n)
        return NULL;
    void *p = arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

static void arena_free(struct cr_arena *a)
{
    if (!a)
        return;
    for (cr_chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

/* ---- UTF ----------------------------------------------------------------- */

size_t cr_utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    unsigned char b = u[0];
    size_t need;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        v = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        v = b & 0x0F;
        if (b == 0xE0)
            lo = 0xA0; /* overlong */
        else if (b == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        v = b & 0x07;
        if (b == 0xF0)
            lo = 0x90; /* overlong */
        else if (b == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (n < need + 1) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        unsigned char c = u[i];
        if (c < lo || c > hi) {
            *cp = 0xFFFD;
            return 1;
        }
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (c & 0x3F);
    }
    *cp = v;
    return need + 1;
}

/* ---- loader state and messages ------------------------------------------- */

/* How deep children's reports may nest (P6). */
#define CHILD_DEPTH 8
#define PATH_SIZE 256

typedef struct ld {
    struct cr_arena *a;
    char *err;
    size_t errsize;
    int depth;
} ld;

static void put_err(ld *l, const char *fmt, ...)
{
    if (!l->err || l->errsize == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, l->errsize, fmt, ap);
    va_end(ap);
}

/* A user string in a message: quoted, control bytes escaped, cut short, so
 * the message stays one line. */
static void quote_into(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0, shown = 0;
    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= cap || shown >= 40) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\' || c >= 0x80) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", c);
        } else {
            out[o++] = (char)c;
        }
        shown++;
    }
    out[o++] = '"';
    out[o] = '\0';
}

static const char *type_name(const curfew__jval *v)
{
    switch (v->type) {
    case CURFEW__J_NULL:
        return "null";
    case CURFEW__J_BOOL:
        return "a boolean";
    case CURFEW__J_NUM:
        return "a number";
    case CURFEW__J_STR:
        return "a string";
    case CURFEW__J_ARR:
        return "an array";
    case CURFEW__J_OBJ:
        return "an object";
    }
    return "an unknown value";
}

/* "path.key" or "key" at the top. */
static void join(char *out, size_t cap, const char *path, const char *key)
{
    if (path[0])
        snprintf(out, cap, "%s.%s", path, key);
    else
        snprintf(out, cap, "%s", key);
}

static void index_path(char *out, size_t cap, const char *path, const char *key,
                       size_t i)
{
    if (path[0])
        snprintf(out, cap, "%s.%s[%zu]", path, key, i);
    else
        snprintf(out, cap, "%s[%zu]", key, i);
}

/* Field flags. */
#define F_REQUIRED 0
#define F_OPTIONAL 1 /* may be absent */
#define F_NULLABLE 2 /* may be null */

static int missing(ld *l, const char *path, const char *key)
{
    if (path[0])
        put_err(l, "%s: missing \"%s\"", path, key);
    else
        put_err(l, "missing \"%s\"", key);
    return -EPROTO;
}

static int wrong(ld *l, const char *path, const char *key, const char *expected,
                 const curfew__jval *got)
{
    char p[PATH_SIZE];
    join(p, sizeof p, path, key);
    put_err(l, "%s: expected %s, got %s", p, expected, type_name(got));
    return -EPROTO;
}

/* ---- typed fields -------------------------------------------------------- */

/* A copy of a JSON string as valid UTF-8 without NUL bytes. */
static const char *clean_str(ld *l, const char *s, size_t n)
{
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = cr_utf8_next(s + i, n - i, &cp);
        out += (cp == 0xFFFD || cp == 0) ? 3 : k;
        i += k;
    }
    char *d = arena_alloc(l->a, out + 1);
    if (!d)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = cr_utf8_next(s + i, n - i, &cp);
        if (cp == 0xFFFD || cp == 0) {
            memcpy(d + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(d + o, s + i, k);
            o += k;
        }
        i += k;
    }
    d[o] = '\0';
    return d;
}

static int str_value(ld *l, const curfew__jval *v, const char **out)
{
    *out = clean_str(l, v->str ? v->str : "", v->str ? v->len : 0);
    return *out ? 0 : -ENOMEM;
}

static int get_str(ld *l, const curfew__jval *obj, const char *path,
                   const char *key, int flags, const char **out)
{
    const curfew__jval *v = curfew__json_get(obj, key);
    *out = NULL;
    if (!v)
        return (flags & F_OPTIONAL) ? 0 : missing(l, path, key);
    if (v->type == CURFEW__J_NULL && (flags & F_NULLABLE))
        return 0;
    if (v->type != CURFEW__J_STR)
        return wrong(l, path, key,
                     (flags & F_NULLABLE) ? "a string or null" : "a string", v);
    return str_value(l, v, out);
}

static int get_int(ld *l, const curfew__jval *obj, const char *path,
                   const char *key, int flags, int64_t min, int64_t max,
                   int64_t *out, int *present)
{
    const curfew__jval *v = curfew__json_get(obj, key);
    *out = 0;
    if (present)
        *present = 0;
    if (!v)
        return (flags & F_OPTIONAL) ? 0 : missing(l, path, key);
    if (v->type == CURFEW__J_NULL && (flags & F_NULLABLE))
        return 0;
    const char *exp =
        (flags & F_NULLABLE) ? "an integer or null" : "an integer";
    if (v->type != CURFEW__J_NUM)
        return wrong(l, path, key, exp, v);
    char p[PATH_SIZE];
    join(p, sizeof p, path, key);
    if (!v->is_int) {
        put_err(l, "%s: expected %s, got %g", p, exp, v->num);
        return -EPROTO;
    }
    if (v->i < min || v->i > max) {
        put_err(l, "%s: %lld is out of range (%lld to %lld)", p,
                (long long)v->i, (long long)min, (long long)max);
        return -EPROTO;
    }
    *out = v->i;
    if (present)
        *present = 1;
    return 0;
}

static int get_bool(ld *l, const curfew__jval *obj, const char *path,
                    const char *key, int *out)
{
    const curfew__jval *v = curfew__json_get(obj, key);
    if (!v)
        return missing(l, path, key);
    if (v->type != CURFEW__J_BOOL)
        return wrong(l, path, key, "true or false", v);
    *out = v->boolean != 0;
    return 0;
}

static int get_arr(ld *l, const curfew__jval *obj, const char *path,
                   const char *key, int flags, const curfew__jval **out)
{
    const curfew__jval *v = curfew__json_get(obj, key);
    *out = NULL;
    if (!v)
        return (flags & F_OPTIONAL) ? 0 : missing(l, path, key);
    if (v->type != CURFEW__J_ARR)
        return wrong(l, path, key, "an array", v);
    *out = v;
    return 0;
}

/* Item i of arr must be an object. */
static int item_obj(ld *l, const curfew__jval *arr, size_t i, const char *path,
                    const char *key, char *ipath, size_t ipath_size)
{
    index_path(ipath, ipath_size, path, key, i);
    if (arr->items[i].type != CURFEW__J_OBJ) {
        put_err(l, "%s: expected an object, got %s", ipath,
                type_name(&arr->items[i]));
        return -EPROTO;
    }
    return 0;
}

#define TRY(x)          \
    do {                \
        int rc_ = (x);  \
        if (rc_ != 0)   \
            return rc_; \
    } while (0)

#define TMIN (-CR_TIME_MAX)
#define TMAX CR_TIME_MAX

/* ---- the parts of a document --------------------------------------------- */

static int load_result(ld *l, const curfew__jval *obj, const char *path,
                       cr_result *out)
{
    static const char *const names[] = {"ok", "error", "timeout", "removed",
                                        "pending"};
    const curfew__jval *v = curfew__json_get(obj, "result");
    if (!v)
        return missing(l, path, "result");
    if (v->type != CURFEW__J_STR)
        return wrong(l, path, "result", "a string", v);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (v->len == strlen(names[i]) &&
            memcmp(v->str, names[i], v->len) == 0) {
            *out = (cr_result)i;
            return 0;
        }
    }
    char q[64];
    quote_into(q, sizeof q, v->str, v->len);
    put_err(l,
            "%s.result: expected \"ok\", \"error\", \"timeout\", \"removed\" "
            "or \"pending\", got %s",
            path, q);
    return -EPROTO;
}

static int load_blocker(ld *l, const curfew__jval *o, const char *path,
                        cr_blocker *b)
{
    TRY(get_str(l, o, path, "name", F_REQUIRED, &b->name));
    TRY(get_str(l, o, path, "barrier", F_REQUIRED, &b->barrier));
    TRY(get_int(l, o, path, "start_ms", F_NULLABLE, TMIN, TMAX, &b->start_ms,
                &b->has_start));
    TRY(get_int(l, o, path, "end_ms", F_NULLABLE, TMIN, TMAX, &b->end_ms,
                &b->has_end));
    TRY(load_result(l, o, path, &b->result));
    TRY(get_str(l, o, path, "error", F_OPTIONAL | F_NULLABLE, &b->error));
    TRY(get_int(l, o, path, "code", F_OPTIONAL | F_NULLABLE, INT64_MIN,
                INT64_MAX, &b->code, &b->has_code));
    TRY(get_str(l, o, path, "status", F_OPTIONAL | F_NULLABLE, &b->status));
    return 0;
}

static int load_record_phase(ld *l, const curfew__jval *o, const char *path,
                             cr_phase *p)
{
    const curfew__jval *arr;
    TRY(get_str(l, o, path, "name", F_REQUIRED, &p->name));
    TRY(get_int(l, o, path, "start_ms", F_NULLABLE, TMIN, TMAX, &p->start_ms,
                &p->has_start));
    TRY(get_int(l, o, path, "end_ms", F_NULLABLE, TMIN, TMAX, &p->end_ms,
                &p->has_end));
    TRY(get_arr(l, o, path, "blockers", F_REQUIRED, &arr));
    p->state = p->has_end     ? CR_PHASE_DONE
               : p->has_start ? CR_PHASE_RUNNING
                              : CR_PHASE_NOT_STARTED;
    p->nblockers = arr->n;
    p->blockers = arena_array(l->a, arr->n, sizeof(cr_blocker));
    if (!p->blockers)
        return -ENOMEM;
    for (size_t i = 0; i < arr->n; i++) {
        char ip[PATH_SIZE];
        TRY(item_obj(l, arr, i, path, "blockers", ip, sizeof ip));
        TRY(load_blocker(l, &arr->items[i], ip, &p->blockers[i]));
    }
    return 0;
}

static int load_broken(ld *l, const curfew__jval *root, const char *path,
                       cr_model *m)
{
    const curfew__jval *arr;
    TRY(get_arr(l, root, path, "broken_registrations", F_REQUIRED, &arr));
    m->nbroken = arr->n;
    m->broken = arena_array(l->a, arr->n, sizeof(cr_broken));
    if (!m->broken)
        return -ENOMEM;
    for (size_t i = 0; i < arr->n; i++) {
        char ip[PATH_SIZE];
        const curfew__jval *o = &arr->items[i];
        cr_broken *b = &m->broken[i];
        TRY(item_obj(l, arr, i, path, "broken_registrations", ip, sizeof ip));
        TRY(get_str(l, o, ip, "name", F_REQUIRED, &b->name));
        TRY(get_str(l, o, ip, "error", F_REQUIRED, &b->error));
        TRY(get_str(l, o, ip, "file", F_NULLABLE, &b->file));
        TRY(get_int(l, o, ip, "line", F_REQUIRED, INT64_MIN, INT64_MAX,
                    &b->line, NULL));
        TRY(get_int(l, o, ip, "code", F_OPTIONAL | F_NULLABLE, INT64_MIN,
                    INT64_MAX, &b->code, &b->has_code));
        TRY(get_str(l, o, ip, "barrier", F_OPTIONAL | F_NULLABLE, &b->barrier));
        TRY(get_str(l, o, ip, "function", F_OPTIONAL | F_NULLABLE,
                    &b->function));
    }
    return 0;
}

static int load_doc(ld *l, const curfew__jval *root, const char *path,
                    cr_model *m);

static int load_children(ld *l, const curfew__jval *root, const char *path,
                         int flags, cr_model *m)
{
    const curfew__jval *arr;
    TRY(get_arr(l, root, path, "children", flags, &arr));
    if (!arr)
        return 0;
    m->nchildren = arr->n;
    m->children = arena_array(l->a, arr->n, sizeof(cr_child));
    if (!m->children)
        return -ENOMEM;
    for (size_t i = 0; i < arr->n; i++) {
        char ip[PATH_SIZE];
        const curfew__jval *o = &arr->items[i];
        cr_child *c = &m->children[i];
        TRY(item_obj(l, arr, i, path, "children", ip, sizeof ip));
        if (curfew__json_get(o, "type")) {
            /* A child's own report (P6). One the tool cannot read is
             * noted, not fatal: the parent's document is still good. */
            char cerr[300] = "";
            if (l->depth >= CHILD_DEPTH) {
                snprintf(cerr, sizeof cerr, "children nested more than %d deep",
                         CHILD_DEPTH);
            } else {
                cr_model *doc = arena_array(l->a, 1, sizeof(cr_model));
                if (!doc)
                    return -ENOMEM;
                ld cl = {l->a, cerr, sizeof cerr, l->depth + 1};
                int rc = load_doc(&cl, o, "", doc);
                if (rc == -ENOMEM)
                    return rc;
                if (rc == 0)
                    c->doc = doc;
            }
            if (c->doc) {
                c->process = c->doc->process;
                c->has_pid = 1;
                c->pid = c->doc->pid;
            } else {
                c->error = clean_str(l, cerr, strlen(cerr));
                if (!c->error)
                    return -ENOMEM;
                /* The labels, if they can be had. */
                const curfew__jval *v = curfew__json_get(o, "process");
                if (v && v->type == CURFEW__J_STR)
                    TRY(str_value(l, v, &c->process));
                v = curfew__json_get(o, "pid");
                if (v && v->type == CURFEW__J_NUM && v->is_int) {
                    c->has_pid = 1;
                    c->pid = v->i;
                }
            }
        } else {
            TRY(get_str(l, o, ip, "process", F_OPTIONAL | F_NULLABLE,
                        &c->process));
            TRY(get_int(l, o, ip, "pid", F_OPTIONAL | F_NULLABLE, INT64_MIN,
                        INT64_MAX, &c->pid, &c->has_pid));
        }
    }
    return 0;
}

static int load_record(ld *l, const curfew__jval *root, const char *path,
                       cr_model *m)
{
    const curfew__jval *arr;
    TRY(get_bool(l, root, path, "clean", &m->clean));
    TRY(get_str(l, root, path, "failure", F_OPTIONAL | F_NULLABLE,
                &m->failure));
    TRY(get_str(l, root, path, "exit_after", F_NULLABLE, &m->exit_after));
    TRY(get_int(l, root, path, "elapsed_ms", F_OPTIONAL | F_NULLABLE, TMIN,
                TMAX, &m->elapsed_ms, &m->has_elapsed));
    TRY(get_arr(l, root, path, "phases", F_REQUIRED, &arr));
    m->nphases = arr->n;
    m->phases = arena_array(l->a, arr->n, sizeof(cr_phase));
    if (!m->phases)
        return -ENOMEM;
    for (size_t i = 0; i < arr->n; i++) {
        char ip[PATH_SIZE];
        TRY(item_obj(l, arr, i, path, "phases", ip, sizeof ip));
        TRY(load_record_phase(l, &arr->items[i], ip, &m->phases[i]));
    }
    TRY(load_broken(l, root, path, m));
    return load_children(l, root, path, F_OPTIONAL, m);
}

static int load_report(ld *l, const curfew__jval *root, const char *path,
                       cr_model *m)
{
    const curfew__jval *arr;
    char ip[PATH_SIZE];
    TRY(get_str(l, root, path, "phase", F_NULLABLE, &m->phase));
    TRY(get_arr(l, root, path, "barrier_path", F_REQUIRED, &arr));
    m->npath = arr->n;
    m->barrier_path = arena_array(l->a, arr->n, sizeof(char *));
    if (!m->barrier_path)
        return -ENOMEM;
    for (size_t i = 0; i < arr->n; i++) {
        index_path(ip, sizeof ip, path, "barrier_path", i);
        if (arr->items[i].type != CURFEW__J_STR) {
            put_err(l, "%s: expected a string, got %s", ip,
                    type_name(&arr->items[i]));
            return -EPROTO;
        }
        TRY(str_value(l, &arr->items[i], &m->barrier_path[i]));
    }
    TRY(get_int(l, root, path, "elapsed_ms", F_REQUIRED, TMIN, TMAX,
                &m->wait_ms, NULL));
    TRY(get_int(l, root, path, "timeout_ms", F_NULLABLE, TMIN, TMAX,
                &m->timeout_ms, &m->has_timeout));

    TRY(get_arr(l, root, path, "conditions", F_REQUIRED, &arr));
    m->nconditions = arr->n;
    m->conditions = arena_array(l->a, arr->n, sizeof(cr_condition));
    if (!m->conditions)
        return -ENOMEM;
    for (size_t i = 0; i < arr->n; i++) {
        const curfew__jval *o = &arr->items[i];
        cr_condition *c = &m->conditions[i];
        TRY(item_obj(l, arr, i, path, "conditions", ip, sizeof ip));
        TRY(get_str(l, o, ip, "name", F_REQUIRED, &c->name));
        TRY(get_str(l, o, ip, "status", F_NULLABLE, &c->status));
        if (!c->status)
            c->status = "";
        TRY(get_str(l, o, ip, "file", F_NULLABLE, &c->file));
        TRY(get_int(l, o, ip, "line", F_REQUIRED, INT64_MIN, INT64_MAX,
                    &c->line, NULL));
        TRY(get_str(l, o, ip, "function", F_NULLABLE, &c->function));
        TRY(get_int(l, o, ip, "age_ms", F_REQUIRED, TMIN, TMAX, &c->age_ms,
                    NULL));
        TRY(get_str(l, o, ip, "barrier", F_REQUIRED, &c->barrier));
    }

    TRY(load_broken(l, root, path, m));

    /* Completed phases, plus room for the running one (see timeline). */
    TRY(get_arr(l, root, path, "phases", F_REQUIRED, &arr));
    m->phases = arena_array(l->a, arr->n + 1, sizeof(cr_phase));
    if (!m->phases)
        return -ENOMEM;
    m->nphases = arr->n;
    for (size_t i = 0; i < arr->n; i++) {
        const curfew__jval *o = &arr->items[i];
        cr_phase *p = &m->phases[i];
        TRY(item_obj(l, arr, i, path, "phases", ip, sizeof ip));
        TRY(get_str(l, o, ip, "name", F_REQUIRED, &p->name));
        TRY(get_int(l, o, ip, "duration_ms", F_REQUIRED, TMIN, TMAX,
                    &p->duration_ms, NULL));
        p->has_duration = 1;
        p->state = CR_PHASE_DONE;
    }
    return load_children(l, root, path, F_REQUIRED, m);
}

/* Keys the formats define (R1, R2, and what the library adds); any other
 * top-level key is a module's section. */
static int is_known_key(const char *k)
{
    static const char *const known[] = {
        "type",       "version",      "pid",        "process",
        "phase",      "barrier_path", "elapsed_ms", "timeout_ms",
        "conditions", "phases",       "children",   "broken_registrations",
        "clean",      "exit_after",   "failure"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(k, known[i]) == 0)
            return 1;
    return 0;
}

static int load_sections(ld *l, const curfew__jval *root, cr_model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < root->n; i++)
        n += !is_known_key(root->keys[i]);
    m->sections = arena_array(l->a, n, sizeof(char *));
    if (!m->sections)
        return -ENOMEM;
    for (size_t i = 0; i < root->n; i++) {
        if (is_known_key(root->keys[i]))
            continue;
        const char *k = clean_str(l, root->keys[i], strlen(root->keys[i]));
        if (!k)
            return -ENOMEM;
        m->sections[m->nsections++] = k;
    }
    return 0;
}

/* ---- timeline  * --------------------------------------------------------- */

static int64_t clamp0(int64_t v)
{
    return v < 0 ? 0 : v;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* a + b for a, b in [0, CR_TIME_MAX], saturating at CR_TIME_MAX: a hang
 * report may list millions of phases of CR_TIME_MAX each. */
static int64_t sat_add(int64_t a, int64_t b)
{
    return a + b > CR_TIME_MAX ? CR_TIME_MAX : a + b;
}

static void record_timeline(cr_model *m)
{
    int64_t end = m->has_elapsed ? clamp0(m->elapsed_ms) : 0;
    for (size_t i = 0; i < m->nphases; i++) {
        cr_phase *p = &m->phases[i];
        if (p->has_start)
            end = max64(end, p->start_ms);
        if (p->has_end)
            end = max64(end, p->end_ms);
        for (size_t j = 0; j < p->nblockers; j++) {
            cr_blocker *b = &p->blockers[j];
            if (b->has_start)
                end = max64(end, b->start_ms);
            if (b->has_end)
                end = max64(end, b->end_ms);
        }
    }
    m->t_end = end;
    for (size_t i = 0; i < m->nphases; i++) {
        cr_phase *p = &m->phases[i];
        if (p->has_start) {
            p->t0 = clamp0(p->start_ms);
            p->t1 = p->has_end ? max64(p->t0, p->end_ms) : end;
        } else if (p->has_end) {
            p->t0 = p->t1 = clamp0(p->end_ms);
        } else {
            p->t0 = p->t1 = 0;
        }
        for (size_t j = 0; j < p->nblockers; j++) {
            cr_blocker *b = &p->blockers[j];
            b->drawn = 1;
            if (b->has_start) {
                b->t0 = clamp0(b->start_ms);
                /* Pending blockers run up to the record's end. */
                b->t1 = b->has_end ? max64(b->t0, b->end_ms) : end;
            } else if (b->has_end) {
                b->t0 = b->t1 = clamp0(b->end_ms);
            } else if (p->state != CR_PHASE_NOT_STARTED) {
                /* Added, its trigger not run yet: waiting since the phase
                 * began. */
                b->t0 = p->t0;
                b->t1 = end;
            } else {
                b->drawn = 0;
            }
        }
    }
}

static int report_timeline(ld *l, cr_model *m)
{
    int64_t cum = 0;
    int found = 0;
    for (size_t i = 0; i < m->nphases; i++) {
        cr_phase *p = &m->phases[i];
        p->t0 = cum;
        p->t1 = sat_add(cum, clamp0(p->duration_ms));
        cum = p->t1;
        if (m->phase && strcmp(m->phase, p->name) == 0)
            found = 1;
    }
    int64_t wait = clamp0(m->wait_ms);
    for (size_t i = 0; i < m->nconditions; i++)
        wait = max64(wait, clamp0(m->conditions[i].age_ms));
    m->t_end = sat_add(cum, wait);
    for (size_t i = 0; i < m->nconditions; i++) {
        cr_condition *c = &m->conditions[i];
        c->t1 = m->t_end;
        c->t0 = clamp0(m->t_end - clamp0(c->age_ms));
    }
    if ((!m->phase || found) && m->nconditions == 0)
        return 0;

    /* The phase in progress: it began when the last completed one ended,
     * and its pending conditions become its blockers. */
    cr_phase *p = &m->phases[m->nphases++];
    p->name = m->phase ? m->phase : "(unknown phase)";
    p->state = CR_PHASE_RUNNING;
    p->t0 = cum;
    p->t1 = m->t_end;
    p->nblockers = m->nconditions;
    p->blockers = arena_array(l->a, m->nconditions, sizeof(cr_blocker));
    if (!p->blockers)
        return -ENOMEM;
    for (size_t i = 0; i < m->nconditions; i++) {
        cr_condition *c = &m->conditions[i];
        cr_blocker *b = &p->blockers[i];
        b->name = c->name;
        b->barrier = c->barrier;
        b->status = c->status[0] ? c->status : NULL;
        b->result = CR_PENDING;
        b->drawn = 1;
        b->t0 = c->t0;
        b->t1 = c->t1;
    }
    return 0;
}

/* ---- documents  * -------------------------------------------------------- */

static int load_doc(ld *l, const curfew__jval *root, const char *path,
                    cr_model *m)
{
    char where[PATH_SIZE + 8];
    snprintf(where, sizeof where, "%s%s", path, path[0] ? ": " : "");
    if (root->type != CURFEW__J_OBJ) {
        put_err(l, "%snot a curfew document: %s instead of an object", where,
                type_name(root));
        return -EPROTO;
    }
    const curfew__jval *t = curfew__json_get(root, "type");
    if (!t) {
        put_err(l, "%snot a curfew document: no \"type\"", where);
        return -EPROTO;
    }
    if (t->type != CURFEW__J_STR)
        return wrong(l, path, "type", "a string", t);
    static const char *const kinds[] = {"curfew-record", "curfew-hang",
                                        "curfew-state"};
    size_t k = 0;
    while (k < 3 && !(t->len == strlen(kinds[k]) &&
                      memcmp(t->str, kinds[k], t->len) == 0))
        k++;
    if (k == 3) {
        char q[64];
        quote_into(q, sizeof q, t->str, t->len);
        put_err(l,
                "%snot a curfew document: \"type\" is %s (expected "
                "curfew-record, curfew-hang or curfew-state)",
                where, q);
        return -EPROTO;
    }
    m->kind = (cr_kind)k;
    TRY(get_int(l, root, path, "version", F_REQUIRED, INT64_MIN, INT64_MAX,
                &m->version, NULL));
    if (m->version != 1) {
        put_err(l, "%sunsupported version %lld (this tool reads version 1)",
                where, (long long)m->version);
        return -EPROTO;
    }
    TRY(get_int(l, root, path, "pid", F_REQUIRED, INT64_MIN, INT64_MAX, &m->pid,
                NULL));
    TRY(get_str(l, root, path, "process", F_NULLABLE, &m->process));
    TRY(load_sections(l, root, m));
    if (m->kind == CR_RECORD) {
        TRY(load_record(l, root, path, m));
        record_timeline(m);
        return 0;
    }
    TRY(load_report(l, root, path, m));
    return report_timeline(l, m);
}

int cr_model_load_buffer(const char *buf, size_t len, cr_model **out, char *err,
                         size_t errsize)
{
    ld l = {NULL, err, errsize, 0};
    if (err && errsize)
        err[0] = '\0';
    if (!out || (!buf && len))
        return -EINVAL;
    *out = NULL;
    size_t i = 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' ||
                       buf[i] == '\r'))
        i++;
    if (i == len) {
        put_err(&l, "empty input: not a curfew document");
        return -EPROTO;
    }

    curfew__jval *root = NULL;
    char perr[200];
    int rc = curfew__json_parse(buf, len, &root, perr, sizeof perr);
    if (rc == -ENOMEM) {
        put_err(&l, "out of memory");
        return rc;
    }
    if (rc != 0) {
        put_err(&l, "malformed JSON: %s", perr);
        return -EPROTO;
    }

    l.a = calloc(1, sizeof(struct cr_arena));
    cr_model *m = l.a ? arena_array(l.a, 1, sizeof(cr_model)) : NULL;
    if (!m) {
        arena_free(l.a);
        curfew__json_free(root);
        put_err(&l, "out of memory");
        return -ENOMEM;
    }
    m->arena = l.a;
    rc = load_doc(&l, root, "", m);
    curfew__json_free(root);
    if (rc != 0) {
        if (rc == -ENOMEM)
            put_err(&l, "out of memory");
        arena_free(l.a);
        return rc;
    }
    *out = m;
    return 0;
}

int cr_model_load_file(const char *path, cr_model **out, char *err,
                       size_t errsize)
{
    ld l = {NULL, err, errsize, 0};
    if (err && errsize)
        err[0] = '\0';
    if (!path || !out)
        return -EINVAL;
    *out = NULL;
    int fd = strcmp(path, "-") == 0 ? 0 : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        put_err(&l, "cannot open: %s", strerror(e));
        return -e;
    }
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf)
        rc = -ENOMEM;
    while (rc == 0) {
        if (len == cap) {
            if (cap >= CR_INPUT_MAX) {
                put_err(&l, "larger than %zu MiB: not a curfew document",
                        CR_INPUT_MAX >> 20);
                rc = -EFBIG;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            put_err(&l, "cannot read: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (fd != 0)
        close(fd);
    if (rc == -ENOMEM)
        put_err(&l, "out of memory");
    if (rc == 0)
        rc = cr_model_load_buffer(buf, len, out, err, errsize);
    free(buf);
    return rc;
}

void cr_model_free(cr_model *m)
{
    if (m)
        arena_free(m->arena);
}

const char *cr_kind_name(cr_kind k)
{
    switch (k) {
    case CR_RECORD:
        return "curfew-record";
    case CR_HANG:
        return "curfew-hang";
    case CR_STATE:
        return "curfew-state";
    }
    return "?";
}

const char *cr_result_name(cr_result r)
{
    switch (r) {
    case CR_OK:
        return "ok";
    case CR_ERROR:
        return "error";
    case CR_TIMEOUT:
        return "timeout";
    case CR_REMOVED:
        return "removed";
    case CR_PENDING:
        return "pending";
    }
    return "?";
}
