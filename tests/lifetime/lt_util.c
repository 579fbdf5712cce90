/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include "lt_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif
#ifndef LT_TSAN
#define LT_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__)
#define LT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LT_ASAN 1
#endif
#endif
#ifndef LT_ASAN
#define LT_ASAN 0
#endif

int lt_tsan(void)
{
    return LT_TSAN;
}

int lt_asan(void)
{
    return LT_ASAN;
}

int64_t lt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void lt_expect_exit0(int status)
{
    if (WIFSIGNALED(status))
        th_fail(__FILE__, __LINE__, "the child was killed by signal %d (%s)",
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        th_fail(__FILE__, __LINE__, "the child exited with status %d",
                WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* ---- events ------------------------------------------------------------- */

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

void lt_on_event(const curfew_event *ev, void *arg)
{
    lt_events *log = arg;
    pthread_mutex_lock(&log->mu);
    if (log->n < LT_MAX_EVENTS) {
        lt_event *e = &log->ev[log->n++];
        e->type = ev->type;
        e->error = ev->error;
        copy_str(e->blocker, sizeof(e->blocker), ev->blocker);
        copy_str(e->phase, sizeof(e->phase), ev->phase);
        copy_str(e->text, sizeof(e->text), ev->text);
    }
    pthread_mutex_unlock(&log->mu);
}

unsigned lt_events_count(lt_events *log, curfew_event_type type,
                         const char *blocker, lt_event *first)
{
    unsigned n = 0;
    pthread_mutex_lock(&log->mu);
    for (unsigned i = 0; i < log->n; i++) {
        lt_event *e = &log->ev[i];
        if (e->type != type)
            continue;
        if (blocker && strcmp(e->blocker, blocker) != 0)
            continue;
        if (n == 0 && first)
            *first = *e;
        n++;
    }
    pthread_mutex_unlock(&log->mu);
    return n;
}

/* ---- a coordinator for tests -------------------------------------------- */

void lt_env_init(lt_env *env)
{
    memset(env, 0, sizeof(*env));
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(env->dir, sizeof(env->dir), "%s/curfew-lt-XXXXXX", base);
    if (!mkdtemp(env->dir))
        th_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    snprintf(env->record, sizeof(env->record), "%s/record.json", env->dir);
    pthread_mutex_init(&env->events.mu, NULL);
    env->cfg.record_path = env->record;
    env->cfg.warn_after_ms = 5000;
    env->cfg.crash_after_ms = 10000;
    env->cfg.on_timeout = CURFEW_TIMEOUT_CONTINUE;
    env->cfg.on_event = lt_on_event;
    env->cfg.event_arg = &env->events;
    env->cfg.process_name = "lt";
}

void lt_env_create(lt_env *env)
{
    int rc = curfew_create(&env->cf, &env->cfg);
    if (rc != 0)
        th_fail(__FILE__, __LINE__, "curfew_create: %s", curfew_strerror(rc));
}

int64_t lt_env_shutdown(lt_env *env)
{
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_begin(env->cf), 0);
    CHECK_EQ(curfew_run(env->cf), 0);
    CHECK_EQ(curfew_is_complete(env->cf), 1);
    return th_now_ms() - t0;
}

curfew__jval *lt_env_record(lt_env *env)
{
    return lt_parse_file(env->record);
}

void lt_env_done(lt_env *env)
{
    if (env->cf)
        CHECK_EQ(curfew_destroy(env->cf), 0);
    env->cf = NULL;
    pthread_mutex_destroy(&env->events.mu);
    th_remove_dir(env->dir);
}

/* ---- modules that log their shutdown ------------------------------------ */

static void *finisher_main(void *arg)
{
    lt_mod *mod = arg;
    if (mod->meet) {
        int64_t end = th_now_ms() + LT_MEET_MS;
        while (atomic_load(&mod->meet->started) < mod->meet->want &&
               th_now_ms() < end)
            th_sleep_ms(1);
    }
    th_sleep_ms(mod->delay_ms);
    atomic_store(&mod->end_seq, atomic_fetch_add(&mod->log->seq, 1));
    atomic_store(&mod->t_end_ms, th_now_ms());
    mod->done_rc = curfew_module_done(mod->m, mod->result);
    return NULL;
}

int lt_mod_shutdown(curfew_module *m, void *arg)
{
    lt_mod *mod = arg;
    CHECK(m == mod->m);
    atomic_fetch_add(&mod->calls, 1);
    mod->shutdown_thread = pthread_self();
    atomic_store(&mod->t_start_ms, th_now_ms());
    atomic_store(&mod->start_seq, atomic_fetch_add(&mod->log->seq, 1));
    if (mod->meet)
        atomic_fetch_add(&mod->meet->started, 1);
    /* L4: from the moment its shutdown starts, the module refuses users. */
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_STOPPING);
    CHECK_EQ(curfew_module_enter(m), -ESHUTDOWN);
    if (mod->delay_ms > 0) {
        mod->has_finisher = 1;
        if (pthread_create(&mod->finisher, NULL, finisher_main, mod) != 0)
            th_fail(__FILE__, __LINE__, "pthread_create failed");
        return CURFEW_PENDING;
    }
    atomic_store(&mod->end_seq, atomic_fetch_add(&mod->log->seq, 1));
    atomic_store(&mod->t_end_ms, th_now_ms());
    return mod->result;
}

void lt_mod_register(curfew *cf, lt_mod *mod, lt_log *log, ...)
{
    const char *deps[16];
    unsigned n = 0;
    va_list ap;
    va_start(ap, log);
    for (const char *d; (d = va_arg(ap, const char *)) != NULL && n < 16;)
        deps[n++] = d;
    va_end(ap);
    mod->log = log;
    atomic_init(&mod->calls, 0);
    atomic_init(&mod->start_seq, -1);
    atomic_init(&mod->end_seq, -1);
    atomic_init(&mod->t_start_ms, 0);
    atomic_init(&mod->t_end_ms, 0);
    static const curfew_module_ops ops = {lt_mod_shutdown};
    int rc = curfew_module_register(cf, mod->name, n ? deps : NULL, n, &ops,
                                    mod, &mod->m);
    if (rc != 0)
        th_fail(__FILE__, __LINE__, "registering %s: %s", mod->name,
                curfew_strerror(rc));
    CHECK(mod->m != NULL);
}

void lt_mod_join(lt_mod *mod)
{
    if (mod->has_finisher) {
        pthread_join(mod->finisher, NULL);
        mod->has_finisher = 0;
        CHECK_EQ(mod->done_rc, 0);
    }
}

/* ---- the record --------------------------------------------------------- */

curfew__jval *lt_parse_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        th_fail(__FILE__, __LINE__, "%s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        if (k == 0)
            break;
        len += k;
    }
    fclose(f);
    curfew__jval *v = NULL;
    char err[256];
    int rc = curfew__json_parse(buf, len, &v, err, sizeof(err));
    if (rc != 0)
        th_fail(__FILE__, __LINE__, "%s: %s", path, rc == -EPROTO ? err : "?");
    free(buf);
    return v;
}

const curfew__jval *lt_jget(const curfew__jval *o, const char *key,
                            curfew__jtype t)
{
    const curfew__jval *v = curfew__json_get(o, key);
    if (!v)
        th_fail(__FILE__, __LINE__, "no \"%s\" in the object", key);
    if (v->type != t)
        th_fail(__FILE__, __LINE__, "\"%s\" has type %d, not %d", key,
                (int)v->type, (int)t);
    return v;
}

const char *lt_jstr(const curfew__jval *o, const char *key)
{
    return lt_jget(o, key, CURFEW__J_STR)->str;
}

int64_t lt_jint(const curfew__jval *o, const char *key)
{
    const curfew__jval *v = lt_jget(o, key, CURFEW__J_NUM);
    if (!v->is_int)
        th_fail(__FILE__, __LINE__, "\"%s\" is not an integer", key);
    return v->i;
}

const curfew__jval *lt_rec_phase(const curfew__jval *rec, const char *phase)
{
    const curfew__jval *phases = lt_jget(rec, "phases", CURFEW__J_ARR);
    for (size_t i = 0; i < phases->n; i++)
        if (strcmp(lt_jstr(&phases->items[i], "name"), phase) == 0)
            return &phases->items[i];
    th_fail(__FILE__, __LINE__, "no phase %s in the record", phase);
}

const curfew__jval *lt_rec_blocker(const curfew__jval *rec, const char *phase,
                                   const char *name, unsigned *count)
{
    const curfew__jval *phases = lt_jget(rec, "phases", CURFEW__J_ARR);
    const curfew__jval *found = NULL;
    unsigned n = 0;
    for (size_t i = 0; i < phases->n; i++) {
        const curfew__jval *p = &phases->items[i];
        if (phase && strcmp(lt_jstr(p, "name"), phase) != 0)
            continue;
        const curfew__jval *bs = lt_jget(p, "blockers", CURFEW__J_ARR);
        for (size_t k = 0; k < bs->n; k++) {
            if (strcmp(lt_jstr(&bs->items[k], "name"), name) != 0)
                continue;
            if (!found)
                found = &bs->items[k];
            n++;
        }
    }
    if (count)
        *count = n;
    return found;
}

const curfew__jval *lt_rec_leak(const curfew__jval *rec, const char *module,
                                const char *type)
{
    const curfew__jval *leaks = curfew__json_get(rec, "leaks");
    if (!leaks)
        return NULL;
    CHECK(leaks->type == CURFEW__J_ARR);
    for (size_t i = 0; i < leaks->n; i++) {
        const curfew__jval *l = &leaks->items[i];
        if (strcmp(lt_jstr(l, "module"), module) == 0 &&
            strcmp(lt_jstr(l, "type"), type) == 0)
            return l;
    }
    return NULL;
}
