/* Registering modules: CONTRACT.md L1 (cycles refused and named, duplicate
 * names, bad arguments, registrations too late).
 *
 * SPDX-License-Identifier: MIT
 */
#include "lt_util.h"

#include <errno.h>
#include <pthread.h>
#include <sys/wait.h>

static curfew_module *const poison = (curfew_module *)(uintptr_t)0x10;

/* ---- cycles (L1) -------------------------------------------------------- */

/* A cycle of n modules (1 to 5): b uses c, c uses d, ..., the last uses a,
 * then a asks to use b: refused with -ELOOP, and curfew_module_cycle()
 * names the cycle from a. The refused module is not registered: a may
 * register again without the cycle, and the shutdown then goes in order. */
static void cycle_case(unsigned n)
{
    static const char *const names[5] = {"a", "b", "c", "d", "e"};
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod mods[5];
    memset(mods, 0, sizeof(mods));
    for (unsigned i = 0; i < n; i++)
        mods[i].name = names[i];
    CHECK_EQ(curfew_module_cycle(env.cf, NULL, 0), 0); /* none yet */
    for (unsigned i = 1; i < n; i++)
        lt_mod_register(env.cf, &mods[i], &log, names[(i + 1) % n], NULL);

    const char *dep[1] = {names[1 % n]};
    curfew_module *out = poison;
    static const curfew_module_ops ops = {lt_mod_shutdown};
    CHECK_EQ(curfew_module_register(env.cf, "a", dep, 1, &ops, &mods[0], &out),
             -ELOOP); /* L1 */
    CHECK(out == NULL);

    char want[64] = "a";
    for (unsigned i = 1; i <= n; i++) {
        strcat(want, " -> ");
        strcat(want, names[i % n]);
    }
    char got[64];
    size_t len = curfew_module_cycle(env.cf, got, sizeof(got));
    CHECK_STR(got, want); /* L1 */
    CHECK_EQ(len, strlen(want));

    /* The refused registration left nothing behind. */
    lt_mod_register(env.cf, &mods[0], &log, NULL);
    lt_env_shutdown(&env);
    for (unsigned i = 0; i < n; i++) {
        CHECK_EQ(atomic_load(&mods[i].calls), 1);
        CHECK_EQ(curfew_module_state(mods[i].m), CURFEW_MODULE_DOWN);
    }
    /* b, c, ... now form a chain ending in a. */
    for (unsigned i = 1; i + 1 < n; i++)
        CHECK(atomic_load(&mods[i].end_seq) <
              atomic_load(&mods[i + 1].start_seq));
    if (n > 1)
        CHECK(atomic_load(&mods[n - 1].end_seq) <
              atomic_load(&mods[0].start_seq));
    lt_env_done(&env);
}

TEST(lt_cycle_1)
{
    cycle_case(1); /* L1: "a -> a" */
}

TEST(lt_cycle_2)
{
    cycle_case(2); /* L1: "a -> b -> a" */
}

TEST(lt_cycle_3)
{
    cycle_case(3); /* L1: "a -> b -> c -> a" */
}

TEST(lt_cycle_4)
{
    cycle_case(4); /* L1 */
}

TEST(lt_cycle_5)
{
    cycle_case(5); /* L1: "a -> b -> c -> d -> e -> a" */
}

/* L1: a cycle closed through one of several dependencies, in the middle of
 * a larger graph, is named along the path that closes it. */
TEST(lt_cycle_in_graph)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    curfew_module *m;
    const char *web[] = {"log", "db"}, *db[] = {"disk", "net"},
               *net[] = {"log", "dns"}, *dns[] = {"web"};
    CHECK_EQ(curfew_module_register(env.cf, "web", web, 2, NULL, NULL, &m), 0);
    CHECK_EQ(curfew_module_register(env.cf, "db", db, 2, NULL, NULL, &m), 0);
    CHECK_EQ(curfew_module_register(env.cf, "net", net, 2, NULL, NULL, &m), 0);
    CHECK_EQ(curfew_module_register(env.cf, "dns", dns, 1, NULL, NULL, &m),
             -ELOOP);
    char got[128];
    curfew_module_cycle(env.cf, got, sizeof(got));
    CHECK_STR(got, "dns -> web -> db -> net -> dns"); /* L1 */
    lt_env_done(&env);
}

/* L1: the text is cut to the buffer (always NUL-terminated) and the return
 * value is the whole length; it is the text of the last refusal, kept
 * across successful registrations. */
TEST(lt_cycle_text)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    CHECK_EQ(curfew_module_cycle(NULL, NULL, 0), 0);
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(curfew_module_cycle(env.cf, buf, sizeof(buf)), 0);
    curfew_module *m;
    const char *dep_b[] = {"beta"}, *dep_a[] = {"alpha"};
    CHECK_EQ(curfew_module_register(env.cf, "alpha", dep_b, 1, NULL, NULL, &m),
             0);
    CHECK_EQ(curfew_module_register(env.cf, "beta", dep_a, 1, NULL, NULL, &m),
             -ELOOP);
    const char *full = "beta -> alpha -> beta";
    CHECK_EQ(curfew_module_cycle(env.cf, NULL, 0), strlen(full));
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(curfew_module_cycle(env.cf, buf, sizeof(buf)), strlen(full));
    CHECK_STR(buf, "beta ->");
    buf[0] = 'x';
    CHECK_EQ(curfew_module_cycle(env.cf, buf, 1), strlen(full));
    CHECK_EQ(buf[0], '\0');

    /* A success keeps it; the next refusal replaces it. */
    CHECK_EQ(curfew_module_register(env.cf, "gamma", NULL, 0, NULL, NULL, &m),
             0);
    char big[64];
    curfew_module_cycle(env.cf, big, sizeof(big));
    CHECK_STR(big, full);
    const char *self[] = {"delta"};
    CHECK_EQ(curfew_module_register(env.cf, "delta", self, 1, NULL, NULL, &m),
             -ELOOP);
    curfew_module_cycle(env.cf, big, sizeof(big));
    CHECK_STR(big, "delta -> delta");
    lt_env_done(&env);
}

#define NLONG 70

/* L1: a cycle is refused however long it is: m0 uses m1 ... uses m69, and
 * m69 asking to use m0 closes a cycle of 70 modules. (Accepting it would
 * hold the static phase forever: no module of the cycle could ever go.) */
TEST(lt_cycle_long)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    static char names[NLONG][16];
    for (int i = 0; i < NLONG; i++)
        snprintf(names[i], sizeof(names[i]), "m%d", i);
    curfew_module *m;
    for (int i = 0; i + 1 < NLONG; i++) {
        const char *dep[] = {names[i + 1]};
        CHECK_EQ(
            curfew_module_register(env.cf, names[i], dep, 1, NULL, NULL, &m),
            0);
    }
    const char *dep[] = {names[0]};
    CHECK_EQ(curfew_module_register(env.cf, names[NLONG - 1], dep, 1, NULL,
                                    NULL, &m),
             -ELOOP); /* L1 */
    char text[1024];
    size_t len = curfew_module_cycle(env.cf, text, sizeof(text));
    CHECK(len < sizeof(text));
    CHECK(strncmp(text, "m69 -> m0 -> m1 -> ", 19) == 0);
    CHECK(len > 10 && strcmp(text + len - 10, "m68 -> m69") == 0);
    lt_env_done(&env);
}

/* A ladder of LAYERS layers of two modules, each using both modules of the
 * layer below, the bottom layer using "sink": 2^LAYERS paths from top to
 * bottom. The cycle check must not walk every path: the child has 10 s. */
#define LAYERS 40

CHILD(ladder)
{
    (void)argc;
    (void)argv;
    curfew *cf;
    if (curfew_create(&cf, NULL) != 0)
        return 2;
    static char names[LAYERS][2][32];
    for (int i = 0; i < LAYERS; i++)
        for (int k = 0; k < 2; k++)
            snprintf(names[i][k], sizeof(names[i][k]), "L%d_%d", i, k);
    curfew_module *m;
    for (int i = LAYERS - 1; i >= 0; i--) {
        for (int k = 0; k < 2; k++) {
            const char *deps[2] = {"sink", "sink"};
            if (i + 1 < LAYERS) {
                deps[0] = names[i + 1][0];
                deps[1] = names[i + 1][1];
            }
            if (curfew_module_register(cf, names[i][k], deps, 2, NULL, NULL,
                                       &m) != 0)
                return 3;
        }
    }
    /* "sink" using the top closes a cycle through the whole ladder (L1). */
    const char *top[] = {names[0][0]};
    if (curfew_module_register(cf, "sink", top, 1, NULL, NULL, &m) != -ELOOP)
        return 4;
    char text[1024];
    size_t len = curfew_module_cycle(cf, text, sizeof(text));
    if (len >= sizeof(text) || strncmp(text, "sink -> L0_0 -> L1_", 19) != 0 ||
        strcmp(text + len - 8, " -> sink") != 0)
        return 5;
    if (curfew_module_register(cf, "sink", NULL, 0, NULL, NULL, &m) != 0)
        return 6;
    if (curfew_begin(cf) != 0 || curfew_run(cf) != 0)
        return 7;
    if (curfew_module_state(m) != CURFEW_MODULE_DOWN)
        return 8;
    curfew_destroy(cf);
    return 0;
}

/* L1: the cycle check takes time proportional to the graph, not to the
 * number of paths in it (this ladder has 2^40). */
TEST(lt_cycle_check_scales)
{
    int64_t t0 = th_now_ms();
    pid_t pid = th_spawn_child("ladder", NULL);
    int status = th_wait_child(pid, 10000);
    lt_expect_exit0(status);
    printf("registering a %d-layer ladder took %lld ms\n", LAYERS,
           (long long)(th_now_ms() - t0));
}

/* ---- other refusals ----------------------------------------------------- */

/* L1: a name can be registered once: -EEXIST, and the first module stays. */
TEST(lt_duplicate_name)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod a = {.name = "dup"};
    lt_mod_register(env.cf, &a, &log, NULL);
    curfew_module *out = poison;
    CHECK_EQ(curfew_module_register(env.cf, "dup", NULL, 0, NULL, NULL, &out),
             -EEXIST);
    CHECK(out == NULL);
    const char *dep[] = {"other"};
    CHECK_EQ(curfew_module_register(env.cf, "dup", dep, 1, NULL, NULL, &out),
             -EEXIST);
    lt_env_shutdown(&env);
    CHECK_EQ(atomic_load(&a.calls), 1);
    curfew__jval *rec = lt_env_record(&env);
    unsigned n = 0;
    CHECK(lt_rec_blocker(rec, "final", "module dup", &n) != NULL);
    CHECK_EQ(n, 1);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L1: bad arguments are -EINVAL, with *out set to NULL, and register
 * nothing. */
TEST(lt_register_invalid)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    curfew *cf = env.cf;
    curfew_module *out = poison;
    const char *ok[] = {"x"}, *null_dep[] = {NULL}, *empty_dep[] = {""};
    CHECK_EQ(curfew_module_register(NULL, "a", NULL, 0, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    out = poison;
    CHECK_EQ(curfew_module_register(cf, NULL, NULL, 0, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    out = poison;
    CHECK_EQ(curfew_module_register(cf, "", NULL, 0, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    CHECK_EQ(curfew_module_register(cf, "a", NULL, 0, NULL, NULL, NULL),
             -EINVAL);
    out = poison;
    CHECK_EQ(curfew_module_register(cf, "a", NULL, 1, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    out = poison;
    CHECK_EQ(curfew_module_register(cf, "a", null_dep, 1, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    out = poison;
    CHECK_EQ(curfew_module_register(cf, "a", empty_dep, 1, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    /* deps may be NULL when ndeps is 0, and non-NULL too. */
    CHECK_EQ(curfew_module_register(cf, "a", NULL, 0, NULL, NULL, &out), 0);
    CHECK(out != NULL);
    CHECK_EQ(curfew_module_register(cf, "b", ok, 0, NULL, NULL, &out), 0);
    lt_env_done(&env);

    /* A phase list without the static phase: nowhere to shut down. */
    curfew_phase_config phases[] = {{"one", 0, 0}, {"two", 0, 0}};
    curfew_config cfg = {.phases = phases, .phase_count = 2};
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    out = poison;
    CHECK_EQ(curfew_module_register(cf, "a", NULL, 0, NULL, NULL, &out),
             -EINVAL);
    CHECK(out == NULL);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* ---- too late ----------------------------------------------------------- */

typedef struct late_ctx {
    curfew *cf;
    atomic_int rc;
    curfew_module *m;
} late_ctx;

static int register_from_shutdown(curfew_module *m, void *arg)
{
    late_ctx *c = arg;
    (void)m;
    atomic_store(&c->rc, curfew_module_register(c->cf, "late", NULL, 0, NULL,
                                                NULL, &c->m));
    return CURFEW_DONE;
}

static int register_from_trigger(curfew_blocker self, void *arg)
{
    late_ctx *c = arg;
    (void)self;
    atomic_store(&c->rc, curfew_module_register(c->cf, "from-trigger", NULL, 0,
                                                NULL, NULL, &c->m));
    return CURFEW_DONE;
}

/* L1: once the static phase began, a registration is refused with
 * -ESHUTDOWN (from a module's shutdown, from another blocker of the static
 * phase, and after the whole shutdown); before it (here in "threads") it
 * is accepted and the module is shut down with the others. */
TEST(lt_register_after_static_began)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    late_ctx in_shutdown = {.cf = env.cf}, in_final = {.cf = env.cf},
             in_threads = {.cf = env.cf};
    atomic_init(&in_shutdown.rc, 1);
    atomic_init(&in_final.rc, 1);
    atomic_init(&in_threads.rc, 1);
    static const curfew_module_ops ops = {register_from_shutdown};
    curfew_module *m;
    CHECK_EQ(curfew_module_register(env.cf, "first", NULL, 0, &ops,
                                    &in_shutdown, &m),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(env.cf, "final"), "registrar",
                                register_from_trigger, &in_final, NULL),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(env.cf, "threads"), "early",
                                register_from_trigger, &in_threads, NULL),
             0);
    lt_env_shutdown(&env);
    CHECK_EQ(atomic_load(&in_shutdown.rc), -ESHUTDOWN); /* L1 */
    CHECK(in_shutdown.m == NULL);
    CHECK_EQ(atomic_load(&in_final.rc), -ESHUTDOWN); /* L1 */
    CHECK_EQ(atomic_load(&in_threads.rc), 0);
    CHECK_EQ(curfew_module_state(in_threads.m), CURFEW_MODULE_DOWN);
    curfew_module *out = poison;
    CHECK_EQ(curfew_module_register(env.cf, "after", NULL, 0, NULL, NULL, &out),
             -ESHUTDOWN); /* L1 */
    CHECK(out == NULL);
    lt_env_done(&env);
}

/* L1: the same holds for the very first registration of a coordinator,
 * made from a blocker of the static phase. */
TEST(lt_register_first_in_static_phase)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    late_ctx c = {.cf = env.cf};
    atomic_init(&c.rc, 1);
    CHECK_EQ(curfew_add_blocker(curfew_phase(env.cf, "final"), "registrar",
                                register_from_trigger, &c, NULL),
             0);
    lt_env_shutdown(&env);
    CHECK_EQ(atomic_load(&c.rc), -ESHUTDOWN); /* L1 */
    lt_env_done(&env);
}

/* ---- registrations from many threads ------------------------------------ */

#define NREG 8

typedef struct reg_ctx {
    curfew *cf;
    pthread_barrier_t *go;
    int index;
    int rc;
    curfew_module *m;
} reg_ctx;

static void *register_main(void *arg)
{
    reg_ctx *c = arg;
    char name[16];
    snprintf(name, sizeof(name), "t%d", c->index);
    pthread_barrier_wait(c->go);
    c->rc = curfew_module_register(c->cf, name, NULL, 0, NULL, NULL, &c->m);
    if (c->rc == 0)
        c->rc = curfew_live_acquire(c->m, "Obj");
    return NULL;
}

/* The rounds of lt_concurrent_first_registration, in a child: a stale
 * trigger may hang the dispatching thread, and the parent's wait turns
 * that into a failure before ctest's timeout. */
CHILD(first_registration)
{
    (void)argc;
    (void)argv;
    int rounds = lt_tsan() ? 30 : 120;
    for (int round = 0; round < rounds; round++) {
        lt_env env;
        lt_env_init(&env);
        lt_env_create(&env);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, NREG);
        reg_ctx ctx[NREG];
        pthread_t th[NREG];
        for (int i = 0; i < NREG; i++) {
            ctx[i] = (reg_ctx){.cf = env.cf, .go = &go, .index = i};
            CHECK_EQ(pthread_create(&th[i], NULL, register_main, &ctx[i]), 0);
        }
        for (int i = 0; i < NREG; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < NREG; i++)
            CHECK_EQ(ctx[i].rc, 0);
        lt_env_shutdown(&env);
        for (int i = 0; i < NREG; i++)
            CHECK_EQ(curfew_module_state(ctx[i].m), CURFEW_MODULE_DOWN);
        curfew__jval *rec = lt_env_record(&env);
        unsigned n = 0;
        const curfew__jval *lc = lt_rec_blocker(rec, NULL, "leak check", &n);
        if (n != 1)
            th_fail(__FILE__, __LINE__, "round %d: %u leak checks", round, n);
        CHECK_STR(lt_jstr(lc, "result"), "ok");
        const curfew__jval *umb = lt_rec_blocker(rec, NULL, "modules", &n);
        CHECK(umb != NULL);
        CHECK_STR(lt_jstr(umb, "result"), "ok");
        for (int i = 0; i < NREG; i++) {
            char name[16];
            snprintf(name, sizeof(name), "t%d", i);
            const curfew__jval *l = lt_rec_leak(rec, name, "Obj");
            CHECK(l != NULL);
            CHECK_EQ(lt_jint(l, "count"), 1);
        }
        curfew__json_free(rec);
        CHECK_EQ(lt_events_count(&env.events, CURFEW_EV_NOTICE, NULL, NULL), 1);
        lt_env_done(&env);
    }
    return 0;
}

/* L1, L3: the first registrations of a coordinator, from eight threads at
 * once, many times over: every module is registered, the lifetime
 * machinery is set up once (one "modules", one "leak check"), the shutdown
 * completes, and the leak check sees the one leaked object of each
 * module. */
TEST(lt_concurrent_first_registration)
{
    pid_t pid = th_spawn_child("first_registration", NULL);
    /* Each round's shutdown writes its record (fsync) at every phase: on
     * a loaded machine's disk the 30 rounds under TSan take 15 s and
     * more, with little CPU. A hang still fails long before ctest's
     * 300 s. */
    int status = th_wait_child(pid, 120000);
    lt_expect_exit0(status);
}

#define NCHAIN 40

typedef struct chain_ctx {
    curfew *cf;
    int index;
    lt_log *log;
    lt_mod mods[NCHAIN];
    char names[NCHAIN][16];
} chain_ctx;

static void *chain_main(void *arg)
{
    chain_ctx *c = arg;
    for (int k = 0; k < NCHAIN; k++)
        snprintf(c->names[k], sizeof(c->names[k]), "c%d_%d", c->index, k);
    /* Odd chains register from the top, even ones from the bottom. */
    for (int j = 0; j < NCHAIN; j++) {
        int k = c->index % 2 ? j : NCHAIN - 1 - j;
        c->mods[k].name = c->names[k];
        if (k + 1 < NCHAIN)
            lt_mod_register(c->cf, &c->mods[k], c->log, c->names[k + 1], NULL);
        else
            lt_mod_register(c->cf, &c->mods[k], c->log, NULL);
    }
    return NULL;
}

/* L1, L2: eight threads each register a chain of 40 modules at the same
 * time: all 320 are accepted and every chain goes down in order. */
TEST(lt_concurrent_registration)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    curfew_module *seed;
    CHECK_EQ(curfew_module_register(env.cf, "seed", NULL, 0, NULL, NULL, &seed),
             0);
    lt_log log = {0};
    static chain_ctx ctx[NREG];
    pthread_t th[NREG];
    for (int i = 0; i < NREG; i++) {
        memset(&ctx[i], 0, sizeof(ctx[i]));
        ctx[i].cf = env.cf;
        ctx[i].index = i;
        ctx[i].log = &log;
        CHECK_EQ(pthread_create(&th[i], NULL, chain_main, &ctx[i]), 0);
    }
    for (int i = 0; i < NREG; i++)
        pthread_join(th[i], NULL);
    lt_env_shutdown(&env);
    for (int i = 0; i < NREG; i++) {
        for (int k = 0; k < NCHAIN; k++) {
            CHECK_EQ(atomic_load(&ctx[i].mods[k].calls), 1);
            if (k + 1 < NCHAIN)
                CHECK(atomic_load(&ctx[i].mods[k].end_seq) <
                      atomic_load(&ctx[i].mods[k + 1].start_seq)); /* L2 */
        }
    }
    lt_env_done(&env);
}
