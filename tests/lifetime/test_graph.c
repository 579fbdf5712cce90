/* The static shutdown of modules: CONTRACT.md L2 (reverse dependency order,
 * independent modules in parallel, asynchronous and failing shutdowns).
 *
 * SPDX-License-Identifier: MIT
 */
#include "lt_util.h"

#include <errno.h>
#include <pthread.h>

/* u's shutdown finished before v's began (by the shared sequence). */
static void check_before(const lt_mod *u, const lt_mod *v)
{
    int ue = atomic_load(&u->end_seq), vs = atomic_load(&v->start_seq);
    if (ue < 0 || vs < 0 || ue >= vs)
        th_fail(__FILE__, __LINE__,
                "%s (end #%d) should be down before %s starts (#%d)", u->name,
                ue, v->name, vs);
}

/* Every module ran its shutdown exactly once, on this thread, and is down. */
static void check_all_down(lt_mod *mods, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        lt_mod_join(&mods[i]);
        CHECK_EQ(atomic_load(&mods[i].calls), 1);
        CHECK(pthread_equal(mods[i].shutdown_thread, pthread_self()));
        CHECK_EQ(curfew_module_state(mods[i].m), CURFEW_MODULE_DOWN);
    }
}

static const char *result_of(const curfew__jval *rec, const char *name)
{
    const curfew__jval *b = lt_rec_blocker(rec, NULL, name, NULL);
    if (!b)
        th_fail(__FILE__, __LINE__, "no blocker \"%s\" in the record", name);
    return lt_jstr(b, "result");
}

/* ---- order (L2) --------------------------------------------------------- */

/* L2: a uses b uses c: a goes first, then b, then c. The dependencies are
 * named before they are registered. */
TEST(lt_chain_order)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod mods[3] = {{.name = "a"}, {.name = "b"}, {.name = "c"}};
    lt_mod_register(env.cf, &mods[0], &log, "b", NULL);
    lt_mod_register(env.cf, &mods[2], &log, NULL);
    lt_mod_register(env.cf, &mods[1], &log, "c", NULL);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(curfew_module_state(mods[i].m), CURFEW_MODULE_UP);
    lt_env_shutdown(&env);
    check_all_down(mods, 3);
    check_before(&mods[0], &mods[1]); /* L2 */
    check_before(&mods[1], &mods[2]); /* L2 */

    /* L2: the static phase is "final" by default; each module is one
     * blocker "module NAME" there, under the umbrella "modules", and the
     * record shows the same order. */
    curfew__jval *rec = lt_env_record(&env);
    const char *names[3] = {"module a", "module b", "module c"};
    int64_t prev_end = -1;
    for (int i = 0; i < 3; i++) {
        const curfew__jval *b = lt_rec_blocker(rec, "final", names[i], NULL);
        CHECK(b != NULL);
        CHECK_STR(lt_jstr(b, "result"), "ok");
        CHECK(lt_jint(b, "start_ms") >= prev_end);
        prev_end = lt_jint(b, "end_ms");
    }
    const curfew__jval *umb = lt_rec_blocker(rec, "final", "modules", NULL);
    CHECK(umb != NULL);
    CHECK_STR(lt_jstr(umb, "result"), "ok");
    CHECK(lt_jint(umb, "end_ms") >= prev_end);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2: a diamond. top uses l and r, both use base: top first, base last,
 * l and r in parallel (both started before either finished). */
TEST(lt_diamond_order)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod mods[4] = {{.name = "base"},
                      {.name = "l", .delay_ms = 100},
                      {.name = "r", .delay_ms = 100},
                      {.name = "top"}};
    lt_mod_register(env.cf, &mods[0], &log, NULL);
    lt_mod_register(env.cf, &mods[1], &log, "base", NULL);
    lt_mod_register(env.cf, &mods[2], &log, "base", NULL);
    lt_mod_register(env.cf, &mods[3], &log, "l", "r", NULL);
    lt_env_shutdown(&env);
    check_all_down(mods, 4);
    check_before(&mods[3], &mods[1]); /* L2: top before l */
    check_before(&mods[3], &mods[2]); /* L2: top before r */
    check_before(&mods[1], &mods[0]); /* L2: l before base */
    check_before(&mods[2], &mods[0]); /* L2: r before base */
    /* L2: no path between l and r: they overlap. */
    CHECK(atomic_load(&mods[1].start_seq) < atomic_load(&mods[2].end_seq));
    CHECK(atomic_load(&mods[2].start_seq) < atomic_load(&mods[1].end_seq));
    lt_env_done(&env);
}

/* The milliseconds from the first module's shutdown start to the last
 * one's end: the modules' part of the shutdown, without the record writes
 * of the other phases (which the disk of a loaded machine can make
 * slow). */
static int64_t span_ms(const lt_mod *mods, int n)
{
    int64_t first = INT64_MAX, last = 0;
    for (int i = 0; i < n; i++) {
        int64_t s = atomic_load(&mods[i].t_start_ms);
        int64_t e = atomic_load(&mods[i].t_end_ms);
        first = s < first ? s : first;
        last = e > last ? e : last;
    }
    return last - first;
}

/* The sum of the modules' shutdown times (start to end): at least the sum
 * of their delays, more on a loaded machine. One after another, the span
 * would be at least that. */
static int64_t sum_ms(const lt_mod *mods, int n)
{
    int64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum +=
            atomic_load(&mods[i].t_end_ms) - atomic_load(&mods[i].t_start_ms);
    return sum;
}

/* L2: five independent modules, each finishing 200 ms after the five
 * shutdowns began (they meet), from a thread: they run in parallel, so
 * their shutdowns take about 200 ms, less than the sum of their times (at
 * least 1000 ms). */
TEST(lt_parallel_independent)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_meet meet = {.want = 5};
    lt_mod mods[5] = {{.name = "m0", .delay_ms = 200, .meet = &meet},
                      {.name = "m1", .delay_ms = 200, .meet = &meet},
                      {.name = "m2", .delay_ms = 200, .meet = &meet},
                      {.name = "m3", .delay_ms = 200, .meet = &meet},
                      {.name = "m4", .delay_ms = 200, .meet = &meet}};
    for (int i = 0; i < 5; i++)
        lt_mod_register(env.cf, &mods[i], &log, NULL);
    int64_t ms = lt_env_shutdown(&env);
    int64_t span = span_ms(mods, 5), sum = sum_ms(mods, 5);
    printf("5 independent modules of 200 ms each: shutdown took %lld ms, "
           "the modules %lld ms, %lld ms one after another\n",
           (long long)ms, (long long)span, (long long)sum);
    check_all_down(mods, 5);
    CHECK(ms >= 200);
    CHECK(span >= 200);
    CHECK(sum >= 1000);
    CHECK(span < sum); /* L2, B8: parallel, not their sum */
    /* Every shutdown started before the first one finished. */
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 5; k++)
            CHECK(atomic_load(&mods[i].start_seq) <
                  atomic_load(&mods[k].end_seq));
    curfew__jval *rec = lt_env_record(&env);
    const curfew__jval *fin = lt_rec_phase(rec, "final");
    CHECK(lt_jint(fin, "end_ms") - lt_jint(fin, "start_ms") < sum);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2: two independent groups (x1 uses x2, y1 uses y2), 200 ms per module:
 * each group takes 400 ms in order, the groups overlap (x1 and y1 meet,
 * then x2 and y2), so their shutdowns take about 400 ms, less than the sum
 * of their times (at least 800 ms). (The overlap is checked by order,
 * which the meetings keep load from blurring; the time only against the
 * sum.) */
TEST(lt_independent_groups)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_meet top = {.want = 2}, bottom = {.want = 2};
    lt_mod mods[4] = {{.name = "x1", .delay_ms = 200, .meet = &top},
                      {.name = "x2", .delay_ms = 200, .meet = &bottom},
                      {.name = "y1", .delay_ms = 200, .meet = &top},
                      {.name = "y2", .delay_ms = 200, .meet = &bottom}};
    lt_mod_register(env.cf, &mods[0], &log, "x2", NULL);
    lt_mod_register(env.cf, &mods[1], &log, NULL);
    lt_mod_register(env.cf, &mods[2], &log, "y2", NULL);
    lt_mod_register(env.cf, &mods[3], &log, NULL);
    int64_t ms = lt_env_shutdown(&env);
    int64_t span = span_ms(mods, 4), sum = sum_ms(mods, 4);
    printf("two groups of two 200 ms modules: shutdown took %lld ms, the "
           "modules %lld ms, %lld ms one after another\n",
           (long long)ms, (long long)span, (long long)sum);
    check_all_down(mods, 4);
    check_before(&mods[0], &mods[1]); /* L2 */
    check_before(&mods[2], &mods[3]); /* L2 */
    /* L2: the groups overlap: x1 and y1 run together, so do x2 and y2. */
    for (int g = 0; g < 2; g++) {
        const lt_mod *x = &mods[g], *y = &mods[2 + g];
        CHECK(atomic_load(&x->start_seq) < atomic_load(&y->end_seq));
        CHECK(atomic_load(&y->start_seq) < atomic_load(&x->end_seq));
    }
    CHECK(ms >= 400);
    CHECK(span >= 400);
    CHECK(sum >= 800);
    CHECK(span < sum); /* L2: less than one after the other */
    lt_env_done(&env);
}

/* L2: a module whose shutdown returns CURFEW_PENDING is down only when
 * curfew_module_done() comes, from another thread; the module it uses waits
 * for that. A second done is -EALREADY. */
TEST(lt_async_done_from_thread)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod mods[2] = {{.name = "a", .delay_ms = 150}, {.name = "b"}};
    lt_mod_register(env.cf, &mods[0], &log, "b", NULL);
    lt_mod_register(env.cf, &mods[1], &log, NULL);
    lt_env_shutdown(&env);
    check_all_down(mods, 2);
    check_before(&mods[0], &mods[1]); /* L2 */
    CHECK(atomic_load(&mods[1].t_start_ms) >= atomic_load(&mods[0].t_end_ms));
    CHECK(atomic_load(&mods[1].t_start_ms) - atomic_load(&mods[0].t_start_ms) >=
          150);
    CHECK_EQ(curfew_module_done(mods[0].m, 0), -EALREADY); /* L2 */
    CHECK_EQ(curfew_module_done(mods[1].m, 0), -EALREADY);
    curfew__jval *rec = lt_env_record(&env);
    const curfew__jval *a = lt_rec_blocker(rec, "final", "module a", NULL);
    CHECK(a != NULL);
    CHECK(lt_jint(a, "end_ms") - lt_jint(a, "start_ms") >= 150);
    CHECK_STR(lt_jstr(a, "result"), "ok");
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2, B3: a shutdown that fails (a negative return, or a negative error
 * passed to curfew_module_done) counts as down: the modules it uses still
 * go, the phase completes, and the record and on_event have the error. */
TEST(lt_failing_shutdown)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod mods[3] = {{.name = "a", .result = -EIO},
                      {.name = "b", .delay_ms = 50, .result = -EPIPE},
                      {.name = "c"}};
    lt_mod_register(env.cf, &mods[0], &log, "b", NULL);
    lt_mod_register(env.cf, &mods[1], &log, "c", NULL);
    lt_mod_register(env.cf, &mods[2], &log, NULL);
    lt_env_shutdown(&env);
    check_all_down(mods, 3);
    check_before(&mods[0], &mods[1]);
    check_before(&mods[1], &mods[2]);

    curfew__jval *rec = lt_env_record(&env);
    const curfew__jval *a = lt_rec_blocker(rec, "final", "module a", NULL);
    const curfew__jval *b = lt_rec_blocker(rec, "final", "module b", NULL);
    CHECK(a != NULL && b != NULL);
    CHECK_STR(lt_jstr(a, "result"), "error");
    CHECK_EQ(lt_jint(a, "code"), -EIO);
    CHECK(strstr(lt_jstr(a, "error"), "EIO") != NULL);
    CHECK_STR(lt_jstr(b, "result"), "error");
    CHECK_EQ(lt_jint(b, "code"), -EPIPE);
    CHECK(strstr(lt_jstr(b, "error"), "EPIPE") != NULL);
    CHECK_STR(result_of(rec, "module c"), "ok");
    CHECK_STR(result_of(rec, "modules"), "ok");
    curfew__json_free(rec);

    lt_event ev;
    CHECK_EQ(
        lt_events_count(&env.events, CURFEW_EV_BLOCKER_FAILED, "module a", &ev),
        1);
    CHECK_EQ(ev.error, -EIO);
    CHECK_EQ(
        lt_events_count(&env.events, CURFEW_EV_BLOCKER_FAILED, "module b", &ev),
        1);
    CHECK_EQ(ev.error, -EPIPE);
    CHECK_EQ(
        lt_events_count(&env.events, CURFEW_EV_BLOCKER_FAILED, "module c", 0),
        0);
    lt_env_done(&env);
}

static int bad_value_shutdown(curfew_module *m, void *arg)
{
    (void)m;
    (void)arg;
    return 7;
}

/* L2: a shutdown returning something that is neither CURFEW_DONE,
 * CURFEW_PENDING nor an error fails the module with -EINVAL (as a trigger's
 * invalid value fails its blocker); it still counts as down. */
TEST(lt_shutdown_bad_value)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod top = {.name = "top"};
    lt_mod_register(env.cf, &top, &log, "odd", NULL);
    static const curfew_module_ops ops = {bad_value_shutdown};
    curfew_module *odd;
    CHECK_EQ(curfew_module_register(env.cf, "odd", NULL, 0, &ops, NULL, &odd),
             0);
    lt_env_shutdown(&env);
    check_all_down(&top, 1);
    CHECK_EQ(curfew_module_state(odd), CURFEW_MODULE_DOWN);
    curfew__jval *rec = lt_env_record(&env);
    const curfew__jval *b = lt_rec_blocker(rec, "final", "module odd", NULL);
    CHECK(b != NULL);
    CHECK_STR(lt_jstr(b, "result"), "error");
    CHECK_EQ(lt_jint(b, "code"), -EINVAL);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2: a dependency on a module that is never registered is ignored: there
 * is nothing to shut down, and the module that names it is not held up. */
TEST(lt_missing_dependency_ignored)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod mods[2] = {{.name = "a"}, {.name = "b"}};
    lt_mod_register(env.cf, &mods[0], &log, "ghost", "b", "phantom", NULL);
    lt_mod_register(env.cf, &mods[1], &log, "ghost", NULL);
    int64_t ms = lt_env_shutdown(&env);
    CHECK(ms < 5000); /* not held until the watchdog */
    check_all_down(mods, 2);
    check_before(&mods[0], &mods[1]);
    curfew__jval *rec = lt_env_record(&env);
    CHECK(lt_rec_blocker(rec, NULL, "module ghost", NULL) == NULL);
    CHECK(lt_rec_blocker(rec, NULL, "module phantom", NULL) == NULL);
    CHECK_STR(result_of(rec, "module a"), "ok");
    CHECK_STR(result_of(rec, "module b"), "ok");
    CHECK_EQ(lt_events_count(&env.events, CURFEW_EV_BLOCKER_FAILED, NULL, NULL),
             0);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2: a module with no ops, or ops without a shutdown, has nothing to do:
 * it is down at once and the modules it uses follow. */
TEST(lt_no_shutdown_function)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    curfew_module *a, *b;
    const char *dep_b[] = {"b"}, *dep_c[] = {"c"};
    static const curfew_module_ops none = {NULL};
    CHECK_EQ(curfew_module_register(env.cf, "a", dep_b, 1, NULL, NULL, &a), 0);
    CHECK_EQ(curfew_module_register(env.cf, "b", dep_c, 1, &none, NULL, &b), 0);
    lt_mod c = {.name = "c"};
    lt_mod_register(env.cf, &c, &log, NULL);
    lt_env_shutdown(&env);
    check_all_down(&c, 1);
    CHECK_EQ(curfew_module_state(a), CURFEW_MODULE_DOWN);
    CHECK_EQ(curfew_module_state(b), CURFEW_MODULE_DOWN);
    lt_env_done(&env);
}

/* L2: cfg->static_phase and cfg->dynamic_phase choose where the modules go
 * down and where the leak check runs (at the end of the dynamic phase, that
 * is the start of the next one). */
static int in_persist(curfew_module *m, void *arg)
{
    curfew *cf = arg;
    (void)m;
    CHECK_STR(curfew_current_phase(cf), "persist");
    CHECK_EQ(curfew_in_or_beyond(cf, "telemetry"), 0);
    return CURFEW_DONE;
}

TEST(lt_custom_phases)
{
    lt_env env;
    lt_env_init(&env);
    env.cfg.static_phase = "persist";
    env.cfg.dynamic_phase = "drain";
    lt_env_create(&env);
    static const curfew_module_ops ops = {in_persist};
    curfew_module *m;
    CHECK_EQ(curfew_module_register(env.cf, "store", NULL, 0, &ops, env.cf, &m),
             0);
    lt_env_shutdown(&env);
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_DOWN);
    curfew__jval *rec = lt_env_record(&env);
    unsigned n = 0;
    CHECK(lt_rec_blocker(rec, "persist", "module store", &n) != NULL);
    CHECK_EQ(n, 1);
    CHECK(lt_rec_blocker(rec, "persist", "modules", NULL) != NULL);
    CHECK(lt_rec_blocker(rec, "final", "modules", NULL) == NULL);
    CHECK(lt_rec_blocker(rec, "children", "leak check", NULL) != NULL); /* L3 */
    lt_rec_blocker(rec, NULL, "leak check", &n);
    CHECK_EQ(n, 1);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2, W3: a module whose shutdown never finishes is marked "timeout" when
 * the watchdog gives up on the static phase (CURFEW_TIMEOUT_CONTINUE), and
 * the module it uses is never torn down under it: its shutdown does not
 * run. */
static int never_done(curfew_module *m, void *arg)
{
    (void)m;
    atomic_int *calls = arg;
    atomic_fetch_add(calls, 1);
    return CURFEW_PENDING;
}

TEST(lt_stuck_shutdown_times_out)
{
    lt_env env;
    lt_env_init(&env);
    env.cfg.warn_after_ms = CURFEW_NEVER;
    env.cfg.crash_after_ms = 300;
    lt_env_create(&env);
    lt_log log = {0};
    atomic_int calls = 0;
    static const curfew_module_ops ops = {never_done};
    curfew_module *stuck;
    const char *dep[] = {"below"};
    CHECK_EQ(
        curfew_module_register(env.cf, "stuck", dep, 1, &ops, &calls, &stuck),
        0);
    lt_mod below = {.name = "below"};
    lt_mod_register(env.cf, &below, &log, NULL);
    int64_t ms = lt_env_shutdown(&env);
    CHECK(ms >= 300);
    CHECK(ms < 5000);
    CHECK_EQ(atomic_load(&calls), 1);
    CHECK_EQ(atomic_load(&below.calls), 0); /* L2 */
    CHECK_EQ(curfew_module_state(stuck), CURFEW_MODULE_STOPPING);
    curfew__jval *rec = lt_env_record(&env);
    CHECK_STR(result_of(rec, "module stuck"), "timeout");
    CHECK_STR(result_of(rec, "modules"), "timeout");
    CHECK(lt_rec_blocker(rec, NULL, "module below", NULL) == NULL);
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* ---- curfew_module_done ------------------------------------------------- */

/* L2: curfew_module_done() refuses NULL, a positive error, a module whose
 * shutdown has not begun (-EINVAL) and a second finish (-EALREADY). */
TEST(lt_done_errors)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod a = {.name = "a", .delay_ms = 30};
    lt_mod_register(env.cf, &a, &log, NULL);
    CHECK_EQ(curfew_module_done(NULL, 0), -EINVAL);
    CHECK_EQ(curfew_module_done(a.m, 0), -EINVAL); /* still up */
    CHECK_EQ(curfew_module_state(a.m), CURFEW_MODULE_UP);
    CHECK_EQ(curfew_module_done(a.m, EIO), -EINVAL); /* positive */
    lt_env_shutdown(&env);
    check_all_down(&a, 1);
    CHECK_EQ(curfew_module_done(a.m, 0), -EALREADY);
    CHECK_EQ(curfew_module_done(a.m, -EIO), -EALREADY);
    lt_env_done(&env);
}

/* L2: a finisher so fast that curfew_module_done() comes before the
 * shutdown function has returned CURFEW_PENDING: the module is down once,
 * and the order holds. */
static int done_then_pending(curfew_module *m, void *arg)
{
    lt_mod *mod = arg;
    atomic_fetch_add(&mod->calls, 1);
    mod->shutdown_thread = pthread_self();
    atomic_store(&mod->start_seq, atomic_fetch_add(&mod->log->seq, 1));
    atomic_store(&mod->end_seq, atomic_fetch_add(&mod->log->seq, 1));
    CHECK_EQ(curfew_module_done(m, 0), 0);
    CHECK_EQ(curfew_module_state(m), CURFEW_MODULE_DOWN);
    return CURFEW_PENDING;
}

TEST(lt_done_before_pending_returns)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod a = {.name = "a", .log = &log}, b = {.name = "b"};
    atomic_init(&a.calls, 0);
    atomic_init(&a.start_seq, -1);
    atomic_init(&a.end_seq, -1);
    static const curfew_module_ops ops = {done_then_pending};
    const char *dep[] = {"b"};
    CHECK_EQ(curfew_module_register(env.cf, "a", dep, 1, &ops, &a, &a.m), 0);
    lt_mod_register(env.cf, &b, &log, NULL);
    int64_t ms = lt_env_shutdown(&env);
    CHECK(ms < 5000);
    CHECK_EQ(atomic_load(&a.calls), 1);
    check_all_down(&b, 1);
    check_before(&a, &b);
    curfew__jval *rec = lt_env_record(&env);
    CHECK_STR(result_of(rec, "module a"), "ok");
    CHECK_STR(result_of(rec, "modules"), "ok");
    curfew__json_free(rec);
    lt_env_done(&env);
}

/* L2, B4: a module finished twice (curfew_module_done() inside a shutdown
 * that then returns CURFEW_DONE) is down once: the first finish wins, as
 * for blockers. Counting it twice would release the module it uses while
 * another user of that module is still shutting down. */
static int done_then_done(curfew_module *m, void *arg)
{
    lt_mod *mod = arg;
    atomic_fetch_add(&mod->calls, 1);
    atomic_store(&mod->start_seq, atomic_fetch_add(&mod->log->seq, 1));
    atomic_store(&mod->end_seq, atomic_fetch_add(&mod->log->seq, 1));
    CHECK_EQ(curfew_module_done(m, 0), 0);
    return CURFEW_DONE;
}

TEST(lt_double_finish_counts_once)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    lt_mod x = {.name = "x", .log = &log};
    atomic_init(&x.calls, 0);
    atomic_init(&x.start_seq, -1);
    atomic_init(&x.end_seq, -1);
    lt_mod y = {.name = "y", .delay_ms = 200}, d = {.name = "d"};
    static const curfew_module_ops ops = {done_then_done};
    const char *dep[] = {"d"};
    CHECK_EQ(curfew_module_register(env.cf, "x", dep, 1, &ops, &x, &x.m), 0);
    lt_mod_register(env.cf, &y, &log, "d", NULL);
    lt_mod_register(env.cf, &d, &log, NULL);
    lt_env_shutdown(&env);
    lt_mod_join(&y);
    CHECK_EQ(atomic_load(&d.calls), 1);
    check_before(&x, &d); /* L2 */
    check_before(&y, &d); /* L2: d waits for its other user too */
    lt_env_done(&env);
}

/* ---- a larger graph ----------------------------------------------------- */

#define NBIG 120

/* L2: 120 modules, each using up to three modules of higher number (so no
 * cycle), a quarter of them finishing from a thread: every dependency edge
 * is respected, and every module goes down exactly once. */
TEST(lt_random_dag)
{
    lt_env env;
    lt_env_init(&env);
    lt_env_create(&env);
    lt_log log = {0};
    static lt_mod mods[NBIG];
    static char names[NBIG][16];
    static int edges[NBIG][3];
    unsigned seed = 12345;
    for (int i = NBIG - 1; i >= 0; i--) {
        snprintf(names[i], sizeof(names[i]), "n%d", i);
        memset(&mods[i], 0, sizeof(mods[i]));
        mods[i].name = names[i];
        seed = seed * 1103515245u + 12345u;
        mods[i].delay_ms =
            (seed >> 16) % 4 == 0 ? 5 + (int)(seed >> 20) % 10 : 0;
        const char *deps[3];
        unsigned nd = 0;
        for (int k = 0; k < 3; k++) {
            edges[i][k] = -1;
            seed = seed * 1103515245u + 12345u;
            int span = NBIG - 1 - i;
            if (span <= 0 || (seed >> 16) % 3 == 0)
                continue;
            int j = i + 1 + (int)((seed >> 8) % (unsigned)span);
            edges[i][k] = j;
            deps[nd++] = names[j];
        }
        static const curfew_module_ops ops = {lt_mod_shutdown};
        mods[i].log = &log;
        atomic_init(&mods[i].calls, 0);
        atomic_init(&mods[i].start_seq, -1);
        atomic_init(&mods[i].end_seq, -1);
        CHECK_EQ(curfew_module_register(env.cf, names[i], nd ? deps : NULL, nd,
                                        &ops, &mods[i], &mods[i].m),
                 0);
    }
    lt_env_shutdown(&env);
    check_all_down(mods, NBIG);
    for (int i = 0; i < NBIG; i++)
        for (int k = 0; k < 3; k++)
            if (edges[i][k] >= 0)
                check_before(&mods[i], &mods[edges[i][k]]); /* L2 */
    lt_env_done(&env);
}
