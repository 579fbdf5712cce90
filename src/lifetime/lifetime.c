/* Lifetime (contract section L), written against the public core API.
 *
 * SPDX-License-Identifier: MIT
 *
 * One registry per coordinator (kept with curfew_ext_set), guarded by its
 * mutex. The static shutdown is one umbrella blocker of the static phase
 * that holds the phase until every module is down, plus one blocker per
 * module, added to the waiting phase only when the module may go (every
 * module using it is down): the core triggers it on the dispatching thread
 * at its next dispatch (B2), so independent modules run in parallel and
 * each one's start and end show in the record.
 *
 * The live counters are the hot path: a lookup by the type string's
 * address in a small fixed table, then one atomic add.
 */
#define _GNU_SOURCE
#include <curfew/lifetime.h>
#include <curfew/report.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TYPES 64
#define SITE_BUCKETS 1024

typedef struct live_type {
    _Atomic(const char *) key; /* the address callers pass */
    char *name;                /* its text, for the report */
    _Atomic int64_t count;
} live_type;

/* Debug mode: where each tracked live object was made. */
typedef struct site_ent {
    struct site_ent *next;
    const void *ptr;
    live_type *type;
    const char *file;
    int line;
} site_ent;

typedef struct registry registry;

struct curfew_module {
    registry *reg;
    curfew_module *next;
    char *name;
    char **deps;
    unsigned ndeps;
    curfew_module **dep_mods; /* resolved at the static phase */
    curfew_module_ops ops;
    void *arg;
    _Atomic int state;
    unsigned users_left;  /* modules using it not yet down */
    unsigned active;      /* enter without leave */
    int shutdown_waiting; /* blocker triggered while users were inside */
    int finished;
    int shutdown_called;
    unsigned visit;
    curfew_blocker blocker; /* "module NAME" in the static phase */
    curfew_blocker late;    /* "module NAME (after its users)", if any */
    live_type types[MAX_TYPES];
    _Atomic unsigned ntypes;
};

struct registry {
    curfew *cf;
    pthread_mutex_t mu;
    curfew_module *mods;
    unsigned nmods, ndown;
    curfew_barrier *static_ph;
    int static_started;
    curfew_blocker umbrella;
    curfew_blocker leak_check;
    int umbrella_pending;
    unsigned epoch;
    int tracked_plain; /* an object was tracked with the debug mode off */
    char *cycle;
    int strict;
    _Atomic int debug;
    site_ent *sites[SITE_BUCKETS];
};

static const char reg_key; /* its address names our slot in curfew_ext */

static void reg_free(void *p)
{
    registry *r = p;
    curfew_module *m = r->mods;
    while (m) {
        curfew_module *n = m->next;
        for (unsigned i = 0; i < m->ndeps; i++)
            free(m->deps[i]);
        free(m->deps);
        free(m->dep_mods);
        for (unsigned i = 0; i < atomic_load(&m->ntypes); i++)
            free(m->types[i].name);
        free(m->name);
        free(m);
        m = n;
    }
    for (unsigned i = 0; i < SITE_BUCKETS; i++) {
        site_ent *s = r->sites[i];
        while (s) {
            site_ent *n = s->next;
            free(s);
            s = n;
        }
    }
    free(r->cycle);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static curfew_module *find(registry *r, const char *name)
{
    for (curfew_module *m = r->mods; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* ---- leaks (L3) ------------------------------------------------------------
 */

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (!*buf && *cap)
        return; /* an allocation failed before: stay empty */
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        while (c < *len + n + 1)
            c *= 2;
        char *b = realloc(*buf, c);
        if (!b) {
            free(*buf);
            *buf = NULL;
            *cap = 1;
            return;
        }
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

/* Length of the well-formed UTF-8 sequence at s (NUL-terminated), 0 if
 * none. */
static size_t utf8_ok(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void append_json_str(char **buf, size_t *len, size_t *cap, const char *s)
{
    char u[8];
    append(buf, len, cap, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x80) {
            size_t n = utf8_ok((const unsigned char *)s);
            if (n == 0) {
                append(buf, len, cap, "\xef\xbf\xbd");
                continue;
            }
            memcpy(u, s, n);
            u[n] = 0;
            append(buf, len, cap, u);
            s += n - 1;
            continue;
        }
        if (c == '"' || c == '\\') {
            u[0] = '\\';
            u[1] = (char)c;
            u[2] = 0;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof(u), "\\u%04x", c);
        } else {
            u[0] = (char)c;
            u[1] = 0;
        }
        append(buf, len, cap, u);
    }
    append(buf, len, cap, "\"");
}

/* The leak check: at the start of the phase after the dynamic one, which
 * is the end of the dynamic phase (L3). Leaks go to a "leaks" section of
 * every later report and record and to a notice event; in strict mode the
 * shutdown fails. Names pass through the report writer's validation, so
 * invalid UTF-8 in a type name is escaped as \u bytes only for controls;
 * the core's set_section refuses what does not parse. */
static int leak_trigger(curfew_blocker self, void *arg)
{
    registry *r = arg;
    char *json = NULL, *text = NULL;
    size_t jl = 0, jc = 0, tl = 0, tc = 0;
    unsigned nleaks = 0;
    append(&json, &jl, &jc, "[");
    pthread_mutex_lock(&r->mu);
    for (curfew_module *m = r->mods; m; m = m->next) {
        unsigned nt = atomic_load(&m->ntypes);
        for (unsigned i = 0; i < nt; i++) {
            live_type *t = &m->types[i];
            int64_t c = atomic_load(&t->count);
            if (c == 0)
                continue;
            char num[32];
            snprintf(num, sizeof(num), "%lld", (long long)c);
            append(&json, &jl, &jc, nleaks ? ",{\"module\":" : "{\"module\":");
            append_json_str(&json, &jl, &jc, m->name);
            append(&json, &jl, &jc, ",\"type\":");
            append_json_str(&json, &jl, &jc, t->name);
            append(&json, &jl, &jc, ",\"count\":");
            append(&json, &jl, &jc, num);
            append(&json, &jl, &jc, ",\"sites\":[");
            int first = 1;
            for (unsigned b = 0; b < SITE_BUCKETS; b++) {
                for (site_ent *s = r->sites[b]; s; s = s->next) {
                    if (s->type != t)
                        continue;
                    char line[32];
                    snprintf(line, sizeof(line), "%d", s->line);
                    append(&json, &jl, &jc,
                           first ? "{\"file\":" : ",{\"file\":");
                    append_json_str(&json, &jl, &jc, s->file);
                    append(&json, &jl, &jc, ",\"line\":");
                    append(&json, &jl, &jc, line);
                    append(&json, &jl, &jc, "}");
                    first = 0;
                }
            }
            append(&json, &jl, &jc, "]}");
            append(&text, &tl, &tc, nleaks ? ", " : "leaks: ");
            append(&text, &tl, &tc, m->name);
            append(&text, &tl, &tc, "/");
            append(&text, &tl, &tc, t->name);
            append(&text, &tl, &tc, ": ");
            append(&text, &tl, &tc, num);
            nleaks++;
        }
    }
    int strict = r->strict;
    pthread_mutex_unlock(&r->mu);
    append(&json, &jl, &jc, "]");
    int rc = CURFEW_DONE;
    if (nleaks && json && text) {
        curfew_report_set_section(r->cf, "leaks", json, jl);
        curfew_notice(r->cf, NULL, text);
        curfew_blocker_status(self, "%s", text);
        if (strict) {
            curfew_record_failure(r->cf, -EBUSY, text);
            curfew_blocker_fail(self, -EBUSY, text);
            rc = CURFEW_PENDING; /* already finished, as failed */
        }
    } else if (nleaks) {
        rc = -ENOMEM;
    }
    free(json);
    free(text);
    return rc;
}

/* ---- static shutdown (L2) ---------------------------------------------- */

static int module_trigger(curfew_blocker self, void *arg);
static void module_down(registry *r, curfew_module *m, int err);

/* With r->mu held: a module all of whose users are down may go. */
static void release_module(registry *r, curfew_module *m)
{
    char name[300];
    snprintf(name, sizeof(name), "module %s", m->name);
    if (curfew_add_blocker(r->static_ph, name, module_trigger, m,
                           &m->blocker) != 0) {
        /* The phase cannot take it (out of memory): count the module as
         * down so the phase is not held forever; the failed add is listed
         * in the record's broken registrations (B5). */
        module_down(r, m, -ENOMEM);
    }
}

/* With r->mu held: the module is down (err 0 or its failure); its
 * blockers finish (a second finish of one is a harmless -EALREADY) and the
 * modules it used may go. */
static void module_down(registry *r, curfew_module *m, int err)
{
    if (m->finished)
        return;
    if (err) {
        curfew_blocker_fail(m->blocker, err, "module shutdown failed");
        curfew_blocker_fail(m->late, err, "module shutdown failed");
    } else {
        curfew_blocker_done(m->blocker);
        curfew_blocker_done(m->late);
    }
    m->finished = 1;
    atomic_store(&m->state, CURFEW_MODULE_DOWN);
    r->ndown++;
    for (unsigned i = 0; i < m->ndeps; i++) {
        curfew_module *d = m->dep_mods[i];
        if (d && d != m && --d->users_left == 0 && !d->finished)
            release_module(r, d);
    }
    if (r->ndown == r->nmods && r->umbrella_pending) {
        r->umbrella_pending = 0;
        curfew_blocker_done(r->umbrella);
    }
}

/* On the dispatching thread: runs the module's shutdown. */
static int run_shutdown(registry *r, curfew_module *m)
{
    pthread_mutex_lock(&r->mu);
    m->shutdown_called = 1;
    pthread_mutex_unlock(&r->mu);
    int rc = m->ops.shutdown ? m->ops.shutdown(m, m->arg) : CURFEW_DONE;
    if (rc == CURFEW_PENDING)
        return rc;
    if (rc > 0)
        rc = -EINVAL; /* not a valid answer: the module fails */
    pthread_mutex_lock(&r->mu);
    module_down(r, m, rc);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int module_trigger(curfew_blocker self, void *arg)
{
    curfew_module *m = arg;
    registry *r = m->reg;
    (void)self;
    pthread_mutex_lock(&r->mu);
    atomic_store(&m->state, CURFEW_MODULE_STOPPING);
    if (m->active) {
        /* Users are inside (L4): the last to leave adds a blocker that
         * runs the shutdown here, on the dispatching thread. */
        m->shutdown_waiting = 1;
        curfew_blocker_status(m->blocker, "waiting for %u user%s to leave",
                              m->active, m->active == 1 ? "" : "s");
        pthread_mutex_unlock(&r->mu);
        return CURFEW_PENDING;
    }
    pthread_mutex_unlock(&r->mu);
    return run_shutdown(r, m);
}

static int late_trigger(curfew_blocker self, void *arg)
{
    curfew_module *m = arg;
    (void)self;
    return run_shutdown(m->reg, m);
}

static int umbrella_trigger(curfew_blocker self, void *arg)
{
    registry *r = arg;
    (void)self;
    pthread_mutex_lock(&r->mu);
    r->static_started = 1;
    for (curfew_module *m = r->mods; m; m = m->next) {
        for (unsigned i = 0; i < m->ndeps; i++) {
            /* A dependency never registered has nothing to shut down. */
            curfew_module *d = find(r, m->deps[i]);
            m->dep_mods[i] = d;
            if (d && d != m)
                d->users_left++;
        }
    }
    int rc = CURFEW_DONE;
    if (r->nmods) {
        r->umbrella_pending = 1;
        rc = CURFEW_PENDING;
        for (curfew_module *m = r->mods; m; m = m->next)
            if (m->users_left == 0)
                release_module(r, m);
        if (r->ndown == r->nmods) {
            r->umbrella_pending = 0;
            rc = CURFEW_DONE;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- registration (L1) ----------------------------------------------------
 */

static registry *make_registry(curfew *cf, int *err);

/* Registries are made under one process-wide lock, so two first
 * registrations of one coordinator never both add the umbrella and the
 * leak check. */
static pthread_mutex_t make_mu = PTHREAD_MUTEX_INITIALIZER;

static registry *get_registry(curfew *cf, int *err)
{
    registry *r = curfew_ext_get(cf, &reg_key);
    if (r)
        return r;
    pthread_mutex_lock(&make_mu);
    r = curfew_ext_get(cf, &reg_key);
    if (!r)
        r = make_registry(cf, err);
    pthread_mutex_unlock(&make_mu);
    return r;
}

static registry *make_registry(curfew *cf, int *err)
{
    registry *r;
    const char *dyn = NULL, *stat = NULL;
    int strict = 0;
    curfew_lifetime_settings(cf, &dyn, &stat, &strict);
    if (!stat) {
        *err = -EINVAL; /* the phase list has no static phase */
        return NULL;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        *err = -ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    r->cf = cf;
    r->strict = strict;
    r->static_ph = curfew_phase(cf, stat);
    const char *dbg = getenv("CURFEW_LIVE_DEBUG");
    atomic_init(&r->debug, dbg && strcmp(dbg, "1") == 0);
    *err = curfew_add_blocker(r->static_ph, "modules", umbrella_trigger, r,
                              &r->umbrella);
    if (!*err && dyn) {
        /* At the start of the phase after the dynamic one, i.e. its end;
         * in the dynamic phase itself when it is the last. */
        unsigned n = curfew_phase_count(cf), i = 0;
        while (i < n && strcmp(curfew_phase_name(cf, i), dyn) != 0)
            i++;
        const char *at = i + 1 < n ? curfew_phase_name(cf, i + 1) : dyn;
        *err = curfew_add_blocker(curfew_phase(cf, at), "leak check",
                                  leak_trigger, r, &r->leak_check);
        if (*err)
            curfew_remove_blocker(r->umbrella);
    }
    if (!*err)
        *err = curfew_ext_set(cf, &reg_key, r, reg_free);
    if (*err) {
        /* Lost a race with another first registration, or failed. */
        registry *other = *err == -EEXIST ? curfew_ext_get(cf, &reg_key) : NULL;
        curfew_remove_blocker(r->umbrella);
        if (r->leak_check.cf)
            curfew_remove_blocker(r->leak_check);
        pthread_mutex_destroy(&r->mu);
        free(r);
        if (other)
            *err = 0;
        return other;
    }
    return r;
}

/* Does a path of dependencies lead from name to target? Depth-first, each
 * module visited once. On success *path (malloc'd) holds the names from
 * name to target, *len of them. With r->mu held. */
static int reaches(registry *r, const char *name, const char *target,
                   const char ***path, unsigned *len)
{
    *path = NULL;
    const char **names = malloc((r->nmods + 2) * sizeof(*names));
    curfew_module **stack = malloc((r->nmods + 1) * sizeof(*stack));
    unsigned *next = malloc((r->nmods + 1) * sizeof(*next));
    if (!names || !stack || !next) {
        free(names);
        free(stack);
        free(next);
        return -ENOMEM;
    }
    int found = 0;
    unsigned depth = 0;
    if (strcmp(name, target) == 0) {
        names[0] = name;
        *len = 1;
        found = 1;
    } else {
        curfew_module *m = find(r, name);
        r->epoch++;
        if (m) {
            m->visit = r->epoch;
            stack[0] = m;
            next[0] = 0;
            depth = 1;
        }
        while (depth && !found) {
            curfew_module *top = stack[depth - 1];
            if (next[depth - 1] == top->ndeps) {
                depth--;
                continue;
            }
            const char *d = top->deps[next[depth - 1]++];
            if (strcmp(d, target) == 0) {
                for (unsigned i = 0; i < depth; i++)
                    names[i] = stack[i]->name;
                names[depth] = target;
                *len = depth + 1;
                found = 1;
                break;
            }
            curfew_module *dm = find(r, d);
            if (dm && dm->visit != r->epoch) {
                dm->visit = r->epoch;
                stack[depth] = dm;
                next[depth] = 0;
                depth++;
            }
        }
    }
    free(stack);
    free(next);
    if (!found) {
        free(names);
        return 0;
    }
    *path = names;
    return 1;
}

int curfew_module_register(curfew *cf, const char *name,
                           const char *const *deps, unsigned ndeps,
                           const curfew_module_ops *ops, void *arg,
                           curfew_module **out)
{
    if (out)
        *out = NULL;
    if (!cf || !name || !*name || !out || (ndeps && !deps))
        return -EINVAL;
    for (unsigned i = 0; i < ndeps; i++)
        if (!deps[i] || !*deps[i])
            return -EINVAL;
    const char *stat = NULL;
    curfew_lifetime_settings(cf, NULL, &stat, NULL);
    if (stat && curfew_in_or_beyond(cf, stat) == 1)
        return -ESHUTDOWN;
    int err = 0;
    registry *r = get_registry(cf, &err);
    if (!r)
        return err;
    curfew_module *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->reg = r;
    m->name = strdup(name);
    m->deps = calloc(ndeps ? ndeps : 1, sizeof(char *));
    m->dep_mods = calloc(ndeps ? ndeps : 1, sizeof(curfew_module *));
    int oom = !m->name || !m->deps || !m->dep_mods;
    for (unsigned i = 0; i < ndeps && !oom; i++)
        oom = !(m->deps[i] = strdup(deps[i]));
    m->ndeps = ndeps;
    if (ops)
        m->ops = *ops;
    m->arg = arg;
    atomic_init(&m->state, CURFEW_MODULE_UP);
    atomic_init(&m->ntypes, 0);
    int rc = oom ? -ENOMEM : 0;

    pthread_mutex_lock(&r->mu);
    if (!rc && r->static_started)
        rc = -ESHUTDOWN;
    if (!rc && find(r, name))
        rc = -EEXIST;
    for (unsigned i = 0; i < ndeps && !rc; i++) {
        /* Would name -> deps[i] -> ... -> name close a cycle? */
        const char **path = NULL;
        unsigned len = 0;
        int found = reaches(r, deps[i], name, &path, &len);
        if (found < 0) {
            rc = found;
        } else if (found) {
            size_t n = 0, cap = 0;
            char *text = NULL;
            append(&text, &n, &cap, name);
            for (unsigned k = 0; k < len; k++) {
                append(&text, &n, &cap, " -> ");
                append(&text, &n, &cap, path[k]);
            }
            free(path);
            free(r->cycle);
            r->cycle = text;
            rc = -ELOOP;
        }
    }
    if (!rc) {
        m->next = r->mods;
        r->mods = m;
        r->nmods++;
    }
    pthread_mutex_unlock(&r->mu);
    if (rc) {
        for (unsigned i = 0; i < ndeps && m->deps; i++)
            free(m->deps[i]);
        free(m->deps);
        free(m->dep_mods);
        free(m->name);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

size_t curfew_module_cycle(curfew *cf, char *buf, size_t size)
{
    registry *r = cf ? curfew_ext_get(cf, &reg_key) : NULL;
    if (!r)
        return 0;
    pthread_mutex_lock(&r->mu);
    size_t n = r->cycle ? strlen(r->cycle) : 0;
    if (buf && size) {
        size_t k = n < size - 1 ? n : size - 1;
        if (k)
            memcpy(buf, r->cycle, k);
        buf[k] = '\0';
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

int curfew_module_done(curfew_module *m, int err)
{
    if (!m || err > 0)
        return -EINVAL;
    registry *r = m->reg;
    pthread_mutex_lock(&r->mu);
    if (m->finished || !m->shutdown_called) {
        pthread_mutex_unlock(&r->mu);
        return m->finished ? -EALREADY : -EINVAL;
    }
    module_down(r, m, err);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int curfew_module_enter(curfew_module *m)
{
    if (!m)
        return -EINVAL;
    registry *r = m->reg;
    pthread_mutex_lock(&r->mu);
    int rc = -ESHUTDOWN;
    if (atomic_load(&m->state) == CURFEW_MODULE_UP) {
        m->active++;
        rc = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void curfew_module_leave(curfew_module *m)
{
    if (!m)
        return;
    registry *r = m->reg;
    pthread_mutex_lock(&r->mu);
    if (m->active && --m->active == 0 && m->shutdown_waiting) {
        m->shutdown_waiting = 0;
        char name[300];
        snprintf(name, sizeof(name), "module %s (after its users)", m->name);
        if (curfew_add_blocker(r->static_ph, name, late_trigger, m, &m->late))
            module_down(r, m, -ENOMEM);
    }
    pthread_mutex_unlock(&r->mu);
}

int curfew_module_state(const curfew_module *m)
{
    return m ? atomic_load(&m->state) : -EINVAL;
}

const char *curfew_module_name(const curfew_module *m)
{
    return m ? m->name : NULL;
}

/* ---- live counters (L3) ----------------------------------------------------
 */

static live_type *type_of(curfew_module *m, const char *type, int create)
{
    unsigned n = atomic_load_explicit(&m->ntypes, memory_order_acquire);
    for (unsigned i = 0; i < n; i++)
        if (atomic_load_explicit(&m->types[i].key, memory_order_relaxed) ==
                type &&
            strcmp(m->types[i].name, type) == 0)
            return &m->types[i];
    for (unsigned i = 0; i < n; i++)
        if (strcmp(m->types[i].name, type) == 0)
            return &m->types[i];
    if (!create)
        return NULL;
    registry *r = m->reg;
    pthread_mutex_lock(&r->mu);
    n = atomic_load(&m->ntypes);
    live_type *t = NULL;
    for (unsigned i = 0; i < n && !t; i++)
        if (strcmp(m->types[i].name, type) == 0)
            t = &m->types[i];
    if (!t && n < MAX_TYPES) {
        char *copy = strdup(type);
        if (copy) {
            t = &m->types[n];
            t->name = copy;
            atomic_init(&t->count, 0);
            atomic_init(&t->key, type);
            atomic_store_explicit(&m->ntypes, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&r->mu);
    return t;
}

int curfew_live_acquire(curfew_module *m, const char *type)
{
    if (!m || !type)
        return -EINVAL;
    live_type *t = type_of(m, type, 1);
    if (!t)
        return atomic_load(&m->ntypes) >= MAX_TYPES ? -ENOSPC : -ENOMEM;
    atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
    return 0;
}

int curfew_live_release(curfew_module *m, const char *type)
{
    if (!m || !type)
        return -EINVAL;
    live_type *t = type_of(m, type, 0);
    if (!t)
        return -EINVAL; /* nothing of that type was ever acquired */
    atomic_fetch_sub_explicit(&t->count, 1, memory_order_relaxed);
    return 0;
}

static unsigned ptr_bucket(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    return (unsigned)((x >> 4) ^ (x >> 16)) % SITE_BUCKETS;
}

int curfew_live_track_at(curfew_module *m, const char *type, const void *ptr,
                         const char *file, int line)
{
    int rc = curfew_live_acquire(m, type);
    if (!rc && !atomic_load(&m->reg->debug)) {
        pthread_mutex_lock(&m->reg->mu);
        m->reg->tracked_plain = 1;
        pthread_mutex_unlock(&m->reg->mu);
    }
    if (rc || !atomic_load(&m->reg->debug))
        return rc;
    site_ent *s = malloc(sizeof(*s));
    if (!s) {
        curfew_live_release(m, type);
        return -ENOMEM;
    }
    s->ptr = ptr;
    s->type = type_of(m, type, 0);
    s->file = file ? file : "?";
    s->line = line;
    registry *r = m->reg;
    unsigned b = ptr_bucket(ptr);
    pthread_mutex_lock(&r->mu);
    s->next = r->sites[b];
    r->sites[b] = s;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int curfew_live_untrack(curfew_module *m, const char *type, const void *ptr)
{
    if (!m || !type)
        return -EINVAL;
    registry *r = m->reg;
    {
        live_type *t = type_of(m, type, 0);
        unsigned b = ptr_bucket(ptr);
        site_ent *found = NULL;
        pthread_mutex_lock(&r->mu);
        for (site_ent **pp = &r->sites[b]; *pp; pp = &(*pp)->next) {
            if ((*pp)->ptr == ptr && (*pp)->type == t) {
                found = *pp;
                *pp = found->next;
                break;
            }
        }
        int plain = r->tracked_plain;
        pthread_mutex_unlock(&r->mu);
        if (!found && atomic_load(&r->debug) && !plain)
            return -ENOENT;
        free(found);
    }
    return curfew_live_release(m, type);
}

int curfew_live_debug(curfew *cf, int on)
{
    int err = 0;
    registry *r = cf ? get_registry(cf, &err) : NULL;
    if (!r)
        return cf ? err : -EINVAL;
    atomic_store(&r->debug, on != 0);
    return 0;
}

int64_t curfew_live_count(const curfew_module *m, const char *type)
{
    if (!m || !type)
        return 0;
    live_type *t = type_of((curfew_module *)m, type, 0);
    return t ? atomic_load(&t->count) : 0;
}
