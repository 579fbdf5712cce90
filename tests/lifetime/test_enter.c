/* Users inside a module: CONTRACT.md L4 (curfew_module_enter/leave), and
 * the small accessors of a module.
 *
 * SPDX-License-Identifier: MIT
 */
#include "lt_util.h"

#include <errno.h>
#include <pthread.h>

/* L4: while a module is up, enter succeeds; once it shut down, a late user
 * gets -ESHUTDOWN instead of a module that is gone. */
TEST(lt_enter_after_down)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod a = {.name = "a"};
    lt_mod_register(env.cf, &a, &log, NULL);
    CHECK_EQ(curfew_module_enter(a.m), 0);
    CHECK_EQ(curfew_module_enter(a.m), 0);
    curfew_module_leave(a.m);
    curfew_module_leave(a.m);
    lt_env_shutdown(&env);
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(curfew_module_state(a.m), CURFEW_MODULE_DOWN);
    CHECK_EQ(curfew_module_enter(a.m), -ESHUTDOWN); /* L4 */
    CHECK_EQ(curfew_module_enter(a.m), -ESHUTDOWN); /* L4 */
    lt_env_done(&env);
}

/* ---- a user inside delays the shutdown ---------------------------------- */

typedef struct user_ctx {
    lt_mod *db;
    atomic_llong t_leave_ms;
    atomic_int saw_stopping;
    atomic_int enter_rc;
    atomic_int ran_while_inside;
} user_ctx;

static void *user_main(void *arg)
{
    user_ctx *u = arg;
    /* Wait until the module's shutdown is due (its user "top" is down). */
    int64_t end = th_now_ms() + 8000;
    while (curfew_module_state(u->db->m) != CURFEW_MODULE_STOPPING &&
           th_now_ms() < end)
        th_sleep_ms(1);
    atomic_store(&u->saw_stopping,
                 curfew_module_state(u->db->m) == CURFEW_MODULE_STOPPING);
    /* L4: a newcomer is refused while the module is stopping. */
    atomic_store(&u->enter_rc, curfew_module_enter(u->db->m));
    th_sleep_ms(200);
    /* L4: the shutdown has not run while we are inside. */
    atomic_store(&u->ran_while_inside, atomic_load(&u->db->calls));
    atomic_store(&u->t_leave_ms, th_now_ms());
    curfew_module_leave(u->db->m);
    return NULL;
}

/* L4, L2: top uses db uses base. A user entered db before the shutdown and
 * leaves 200 ms after db's turn came: db's shutdown waits for the leave,
 * then runs on the dispatching thread; base waits for db. */
TEST(lt_user_delays_shutdown)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod top = {.name = "top"}, db = {.name = "db"}, base = {.name = "base"};
    lt_mod_register(env.cf, &top, &log, "db", NULL);
    lt_mod_register(env.cf, &db, &log, "base", NULL);
    lt_mod_register(env.cf, &base, &log, NULL);
    user_ctx u = {.db = &db};
    CHECK_EQ(curfew_module_enter(db.m), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, user_main, &u), 0);
    lt_env_shutdown(&env);
    pthread_join(th, NULL);

    CHECK_EQ(atomic_load(&u.saw_stopping), 1);
    CHECK_EQ(atomic_load(&u.enter_rc), -ESHUTDOWN); /* L4 */
    CHECK_EQ(atomic_load(&u.ran_while_inside), 0);  /* L4 */
    CHECK_EQ(atomic_load(&db.calls), 1);
    CHECK(atomic_load(&db.t_start_ms) >= atomic_load(&u.t_leave_ms)); /* L4 */
    CHECK(pthread_equal(db.shutdown_thread, pthread_self()));         /* L4 */
    CHECK(atomic_load(&top.end_seq) < atomic_load(&db.start_seq));    /* L2 */
    CHECK(atomic_load(&db.end_seq) < atomic_load(&base.start_seq));   /* L2 */
    CHECK_EQ(curfew_module_state(db.m), CURFEW_MODULE_DOWN);
    CHECK_EQ(curfew_module_state(base.m), CURFEW_MODULE_DOWN);

    curfew__jval *rec = lt_env_record(&env);
    const curfew__jval *b = lt_rec_blocker(rec, "final", "module db", NULL);
    CHECK(b != NULL);
    CHECK_STR(lt_jstr(b, "result"), "ok");
    CHECK(lt_jint(b, "end_ms") - lt_jint(b, "start_ms") >= 150);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L4: nested enters need as many leaves; a leave without an enter is
 * ignored and does not let the shutdown run while a real user is inside. */
static void *leave_later(void *arg)
{
    lt_mod *m = arg;
    int64_t end = th_now_ms() + 8000;
    while (curfew_module_state(m->m) != CURFEW_MODULE_STOPPING &&
           th_now_ms() < end)
        th_sleep_ms(1);
    th_sleep_ms(50);
    curfew_module_leave(m->m); /* one of two: still inside */
    th_sleep_ms(100);
    CHECK_EQ(atomic_load(&m->calls), 0);
    curfew_module_leave(m->m);
    return NULL;
}

TEST(lt_enter_nested_and_unbalanced)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod a = {.name = "a"};
    lt_mod_register(env.cf, &a, &log, NULL);
    curfew_module_leave(a.m); /* unbalanced: ignored */
    curfew_module_leave(a.m);
    CHECK_EQ(curfew_module_enter(a.m), 0);
    CHECK_EQ(curfew_module_enter(a.m), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, leave_later, &a), 0);
    int64_t ms = lt_env_shutdown(&env);
    pthread_join(th, NULL);
    CHECK(ms >= 150); /* L4: waited for both leaves */
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(curfew_module_state(a.m), CURFEW_MODULE_DOWN);
    lt_env_done(&env);
}

/* ---- many users racing the shutdown ------------------------------------- */

typedef struct race_ctx {
    curfew_module *m;
    atomic_int inside;
    atomic_int shut;
    atomic_int violations;
    atomic_llong entered;
} race_ctx;

static int race_shutdown(curfew_module *m, void *arg)
{
    race_ctx *c = arg;
    (void)m;
    /* L4: nobody is inside when the shutdown runs. */
    if (atomic_load(&c->inside) != 0)
        atomic_fetch_add(&c->violations, 1);
    atomic_store(&c->shut, 1);
    return CURFEW_DONE;
}

static void *race_user(void *arg)
{
    race_ctx *c = arg;
    for (;;) {
        int rc = curfew_module_enter(c->m);
        if (rc == -ESHUTDOWN)
            break;
        if (rc != 0) {
            atomic_fetch_add(&c->violations, 1);
            break;
        }
        atomic_fetch_add(&c->inside, 1);
        if (atomic_load(&c->shut)) /* L4: used after its shutdown */
            atomic_fetch_add(&c->violations, 1);
        atomic_fetch_add(&c->entered, 1);
        atomic_fetch_sub(&c->inside, 1);
        curfew_module_leave(c->m);
    }
    return NULL;
}

/* L4: six threads enter and leave a module as fast as they can while it
 * shuts down: its shutdown never runs with a user inside, no user gets in
 * after it, and every thread ends with -ESHUTDOWN. */
TEST(lt_enter_race)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    race_ctx c = {0};
    static const curfew_module_ops ops = {race_shutdown};
    CHECK_EQ(curfew_module_register(env.cf, "hot", NULL, 0, &ops, &c, &c.m), 0);
    pthread_t th[6];
    for (int i = 0; i < 6; i++)
        CHECK_EQ(pthread_create(&th[i], NULL, race_user, &c), 0);
    /* The users are at it (on a loaded machine they may start late). */
    int64_t end = th_now_ms() + 10000;
    while (atomic_load(&c.entered) == 0 && th_now_ms() < end)
        th_sleep_ms(1);
    th_sleep_ms(50);
    lt_env_shutdown(&env);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(atomic_load(&c.violations), 0);
    CHECK_EQ(atomic_load(&c.shut), 1);
    CHECK(atomic_load(&c.entered) > 0);
    CHECK_EQ(curfew_module_state(c.m), CURFEW_MODULE_DOWN);
    printf("%lld enters before the shutdown\n",
           (long long)atomic_load(&c.entered));
    lt_env_done(&env);
}

/* ---- accessors ---------------------------------------------------------- */

/* L1, L4: the accessors refuse NULL; the name is a copy; the lifecycle goes
 * UP, STOPPING (while its shutdown is pending), DOWN. */
static int slow_shutdown(curfew_module *m, void *arg)
{
    atomic_int *state = arg;
    atomic_store(state, curfew_module_state(m));
    return CURFEW_PENDING;
}

static void *finish_later(void *arg)
{
    curfew_module *m = arg;
    th_sleep_ms(50);
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_STOPPING);
    CHECK_EQ(curfew_module_enter(m), -ESHUTDOWN);
    CHECK_EQ(curfew_module_done(m, 0), 0);
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_DOWN);
    return NULL;
}

TEST(lt_module_accessors)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    CHECK_EQ(curfew_module_enter(NULL), -EINVAL);
    curfew_module_leave(NULL);
    CHECK_EQ(curfew_module_state(NULL), -EINVAL);
    CHECK(curfew_module_name(NULL) == NULL);

    char name[16] = "cache";
    atomic_int seen = -1;
    static const curfew_module_ops ops = {slow_shutdown};
    curfew_module *m;
    CHECK_EQ(curfew_module_register(env.cf, name, NULL, 0, &ops, &seen, &m), 0);
    strcpy(name, "XXXXX");
    CHECK_STR(curfew_module_name(m), "cache");
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_UP);
    pthread_t th;
    CHECK_EQ(curfew_begin(env.cf), 0);
    /* Dispatch until the shutdown is pending, then finish it from a
     * thread. */
    int64_t end = th_now_ms() + 5000;
    while (atomic_load(&seen) < 0 && th_now_ms() < end) {
        CHECK(curfew_dispatch(env.cf) >= 0);
        th_sleep_ms(1);
    }
    CHECK_EQ(atomic_load(&seen), CURFEW_MODULE_STOPPING);
    CHECK_EQ(pthread_create(&th, NULL, finish_later, m), 0);
    CHECK_EQ(curfew_run(env.cf), 0);
    pthread_join(th, NULL);
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_DOWN);
    CHECK_STR(curfew_module_name(m), "cache");
    lt_env_done(&env);
}

/* L4: a shutdown that is due while a user is inside is pending, and
 * curfew_module_done() cannot finish it before it ran: done is for a
 * shutdown that returned CURFEW_PENDING (-EINVAL otherwise). The shutdown
 * then runs once, after the leave. */
static void *early_done(void *arg)
{
    lt_mod *m = arg;
    int64_t end = th_now_ms() + 8000;
    while (curfew_module_state(m->m) != CURFEW_MODULE_STOPPING &&
           th_now_ms() < end)
        th_sleep_ms(1);
    th_sleep_ms(20);
    CHECK_EQ(atomic_load(&m->calls), 0);
    CHECK_EQ(curfew_module_done(m->m, 0), -EINVAL);
    curfew_module_leave(m->m);
    return NULL;
}

TEST(lt_done_while_user_inside)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod a = {.name = "a"}, b = {.name = "b"};
    lt_mod_register(env.cf, &a, &log, "b", NULL);
    lt_mod_register(env.cf, &b, &log, NULL);
    CHECK_EQ(curfew_module_enter(a.m), 0);
    pthread_t th;
    CHECK_EQ(pthread_create(&th, NULL, early_done, &a), 0);
    lt_env_shutdown(&env);
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&a.calls), 1);
    CHECK_EQ(atomic_load(&b.calls), 1);
    CHECK(atomic_load(&a.end_seq) < atomic_load(&b.start_seq));
    lt_env_done(&env);
}
