/* Worker references (CONTRACT.md K2) and what reports say about them
 * (K5): strong references hold a worker in CANCELING, weak ones are told
 * once on the worker's thread, nothing can be taken at or after
 * CANCELING; a reference never released shows in the hang report with
 * its name and call site.
 *
 * SPDX-License-Identifier: MIT
 */
#include "report/jsonr.h"
#include "wk_util.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>

static curfew_worker *start_plain(const char *name,
                                  void (*on_killing)(curfew_worker *, void *),
                                  void *arg)
{
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = name;
    wc.on_killing = on_killing;
    wc.arg = arg;
    curfew_worker *w = NULL;
    CHECK_EQ(curfew_worker_start(&wc, &w), 0);
    return w;
}

/* Records the worker's thread from inside a task. */
struct thread_note {
    pthread_t th;
    atomic_int set;
};

static void note_thread(curfew_worker *w, void *arg)
{
    (void)w;
    struct thread_note *n = arg;
    n->th = pthread_self();
    atomic_store(&n->set, 1);
}

static pthread_t worker_thread(curfew_worker *w, struct thread_note *n)
{
    memset(n, 0, sizeof(*n));
    CHECK_EQ(curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, note_thread, n),
             0);
    wk_wait_flag(&n->set, 1, 5000);
    return n->th;
}

/* ---- K2: strong references ---------------------------------------------- */

struct killing_note {
    atomic_int calls;
    int state;
    pthread_t th;
    int64_t at_ms;
};

static void note_killing(curfew_worker *w, void *arg)
{
    struct killing_note *k = arg;
    k->state = curfew_worker_state(w);
    k->th = pthread_self();
    k->at_ms = th_now_ms();
    atomic_fetch_add(&k->calls, 1);
}

TEST(wk_strong_delays_killing)
{
    /* K2: a strong reference keeps a cancelled worker in CANCELING: no
     * on_killing, no DEAD, join times out, until the last one is released;
     * then KILLING and DEAD follow at once. Two references: releasing one
     * is not enough. */
    struct killing_note k;
    memset(&k, 0, sizeof(k));
    curfew_worker *w = start_plain("held", note_killing, &k);
    struct thread_note tn;
    pthread_t wth = worker_thread(w, &tn);
    curfew_worker_ref *a, *b;
    CHECK_EQ(curfew_worker_ref_strong(w, "first", &a), 0);
    CHECK_EQ(curfew_worker_ref_strong(w, "second", &b), 0);
    CHECK(curfew_worker_ref_worker(a) == w);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.strong_refs, 2);
    CHECK_EQ(st.weak_refs, 0);
    CHECK_EQ(curfew_worker_cancel(w), 0);
    th_sleep_ms(100);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    CHECK_EQ(atomic_load(&k.calls), 0);
    CHECK_EQ(curfew_worker_join(w, 30), -ETIMEDOUT);
    CHECK_EQ(curfew_worker_ref_release(a), 0);
    th_sleep_ms(50);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    CHECK_EQ(atomic_load(&k.calls), 0);
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.strong_refs, 1);
    int64_t released = th_now_ms();
    CHECK_EQ(curfew_worker_ref_release(b), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(atomic_load(&k.calls), 1); /* K4: once */
    CHECK_EQ(k.state, CURFEW_WORKER_KILLING);
    CHECK(pthread_equal(k.th, wth));
    CHECK(k.at_ms >= released);
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.strong_refs, 0);
    CHECK_EQ(curfew_worker_free(w), 0);
}

TEST(wk_strong_before_cancel_released)
{
    /* K2: references released before the cancel hold nothing: the worker
     * goes through CANCELING to DEAD at once. */
    struct killing_note k;
    memset(&k, 0, sizeof(k));
    curfew_worker *w = start_plain("released", note_killing, &k);
    for (int i = 0; i < 10; i++) {
        curfew_worker_ref *r;
        CHECK_EQ(curfew_worker_ref_strong(w, "brief", &r), 0);
        CHECK_EQ(curfew_worker_ref_release(r), 0);
    }
    CHECK_EQ(curfew_worker_cancel(w), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(atomic_load(&k.calls), 1);
    CHECK_EQ(curfew_worker_free(w), 0);
}

/* ---- K2: no reference at or after CANCELING ---------------------------- */

struct late_refs {
    int strong_rc, weak_rc; /* taken inside on_killing (KILLING) */
    int post_rc;
};

static void late_cb(curfew_worker_ref *ref, void *arg)
{
    (void)ref;
    (void)arg;
}

static void late_task(curfew_worker *w, void *arg)
{
    (void)w;
    (void)arg;
}

static void late_killing(curfew_worker *w, void *arg)
{
    struct late_refs *l = arg;
    curfew_worker_ref *r = (curfew_worker_ref *)1;
    l->strong_rc = curfew_worker_ref_strong(w, "in-killing", &r);
    CHECK(r == NULL);
    l->weak_rc = curfew_worker_ref_weak(w, "in-killing", late_cb, NULL, &r);
    CHECK(r == NULL);
    l->post_rc =
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, late_task, NULL);
}

TEST(wk_ref_after_canceling)
{
    /* K2: at CLOSING references can still be taken; at CANCELING, in
     * KILLING (from on_killing) and at DEAD both kinds fail with
     * -ESHUTDOWN, and *out is NULL. */
    struct late_refs l;
    memset(&l, 0, sizeof(l));
    wk_hold hold;
    wk_hold_init(&hold);
    curfew_worker *w = start_plain("late", late_killing, &l);
    CHECK_EQ(
        curfew_worker_post(w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task, &hold),
        0);
    wk_hold_wait_entered(&hold, 5000);
    CHECK_EQ(curfew_worker_close(w), 0);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CLOSING);
    curfew_worker_ref *s, *wr, *x = (curfew_worker_ref *)1;
    CHECK_EQ(curfew_worker_ref_strong(w, "at-closing", &s), 0);
    CHECK_EQ(curfew_worker_ref_weak(w, "at-closing", late_cb, NULL, &wr), 0);
    wk_gate_open(&hold.gate);
    wk_wait_state(w, CURFEW_WORKER_CANCELING, 5000);
    CHECK_EQ(curfew_worker_state(w), CURFEW_WORKER_CANCELING);
    CHECK_EQ(curfew_worker_ref_strong(w, "at-canceling", &x), -ESHUTDOWN);
    CHECK(x == NULL);
    x = (curfew_worker_ref *)1;
    CHECK_EQ(curfew_worker_ref_weak(w, "at-canceling", late_cb, NULL, &x),
             -ESHUTDOWN);
    CHECK(x == NULL);
    CHECK_EQ(curfew_worker_cancel(w), -EALREADY);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.strong_refs, 1);
    CHECK_EQ(st.weak_refs, 1);
    CHECK_EQ(curfew_worker_ref_release(s), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(l.strong_rc, -ESHUTDOWN);
    CHECK_EQ(l.weak_rc, -ESHUTDOWN);
    CHECK_EQ(l.post_rc, -ESHUTDOWN);
    CHECK_EQ(curfew_worker_ref_strong(w, "at-dead", &x), -ESHUTDOWN);
    CHECK_EQ(curfew_worker_ref_weak(w, "at-dead", late_cb, NULL, &x),
             -ESHUTDOWN);
    CHECK_EQ(curfew_worker_ref_release(wr), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
    wk_hold_destroy(&hold);
}

/* ---- K2: weak references ------------------------------------------------ */

struct weak_note {
    atomic_int calls;
    int state;
    pthread_t th;
    curfew_worker_ref *seen_ref;
    curfew_worker *seen_worker;
    int release_inside; /* release the reference from the callback */
    int release_rc;
};

static void weak_told(curfew_worker_ref *ref, void *arg)
{
    struct weak_note *n = arg;
    n->seen_ref = ref;
    n->seen_worker = curfew_worker_ref_worker(ref);
    n->state = curfew_worker_state(n->seen_worker);
    n->th = pthread_self();
    if (n->release_inside)
        n->release_rc = curfew_worker_ref_release(ref);
    atomic_fetch_add(&n->calls, 1);
}

TEST(wk_weak_told_once_on_worker_thread)
{
    /* K2: a weak reference's on_canceling runs once, on the worker's own
     * thread (the same pthread as its tasks), in CANCELING; it does not
     * hold the worker (it dies with the weak reference still taken); it
     * may release itself from the callback; a NULL callback is allowed. */
    struct killing_note k;
    memset(&k, 0, sizeof(k));
    curfew_worker *w = start_plain("weakly-held", note_killing, &k);
    struct thread_note tn;
    pthread_t wth = worker_thread(w, &tn);
    CHECK(!pthread_equal(wth, pthread_self()));
    struct weak_note kept, selfrel;
    memset(&kept, 0, sizeof(kept));
    memset(&selfrel, 0, sizeof(selfrel));
    selfrel.release_inside = 1;
    curfew_worker_ref *r_kept, *r_self, *r_nocb;
    CHECK_EQ(curfew_worker_ref_weak(w, "kept", weak_told, &kept, &r_kept), 0);
    CHECK_EQ(
        curfew_worker_ref_weak(w, "self-release", weak_told, &selfrel, &r_self),
        0);
    CHECK_EQ(curfew_worker_ref_weak(w, "no-callback", NULL, NULL, &r_nocb), 0);
    curfew_worker_stats st;
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.weak_refs, 3);
    CHECK_EQ(st.strong_refs, 0);
    /* Weak references are not listed as holders (K5). */
    char buf[64];
    CHECK_EQ(curfew_worker_describe_refs(w, buf, sizeof(buf)), 0);
    CHECK_STR(buf, "");
    th_sleep_ms(20);
    CHECK_EQ(atomic_load(&kept.calls), 0); /* not before CANCELING */
    CHECK_EQ(curfew_worker_cancel(w), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(atomic_load(&k.calls), 1);
    CHECK_EQ(atomic_load(&kept.calls), 1);
    CHECK_EQ(atomic_load(&selfrel.calls), 1);
    CHECK_EQ(kept.state, CURFEW_WORKER_CANCELING);
    CHECK(pthread_equal(kept.th, wth));
    CHECK(pthread_equal(selfrel.th, wth));
    CHECK(kept.seen_ref == r_kept);
    CHECK(kept.seen_worker == w);
    CHECK(selfrel.seen_ref == r_self);
    CHECK_EQ(selfrel.release_rc, 0);
    CHECK_EQ(curfew_worker_stats_get(w, &st), 0);
    CHECK_EQ(st.weak_refs, 2); /* "kept" and "no-callback" */
    CHECK_EQ(curfew_worker_free(w), -EBUSY);
    CHECK_EQ(curfew_worker_ref_release(r_kept), 0);
    CHECK_EQ(curfew_worker_free(w), -EBUSY);
    CHECK_EQ(curfew_worker_ref_release(r_nocb), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
}

/* ---- K2 under many threads ---------------------------------------------- */

#define NTAKERS 6

struct shared {
    curfew_worker *w;
    pthread_t wth;
    atomic_int strong_held; /* strong references taken, not yet released */
    atomic_int weak_calls;
    atomic_int killing_calls;
    atomic_int held_at_killing;
};

struct taker {
    struct shared *sh;
    pthread_t th;
    uint32_t rng;
    int taken_strong, taken_weak;
    int refused_strong, refused_weak;
    int take_after_refusal; /* a take that worked after one was refused */
};

static void many_weak_told(curfew_worker_ref *ref, void *arg)
{
    struct shared *sh = arg;
    CHECK(curfew_worker_ref_worker(ref) == sh->w);
    CHECK_EQ(curfew_worker_state(sh->w), CURFEW_WORKER_CANCELING);
    CHECK(pthread_equal(pthread_self(), sh->wth));
    atomic_fetch_add(&sh->weak_calls, 1);
}

static void many_killing(curfew_worker *w, void *arg)
{
    struct shared *sh = arg;
    (void)w;
    atomic_store(&sh->held_at_killing, atomic_load(&sh->strong_held));
    atomic_fetch_add(&sh->killing_calls, 1);
}

static void *taker_main(void *p)
{
    struct taker *t = p;
    struct shared *sh = t->sh;
    while (!t->refused_strong || !t->refused_weak) {
        uint32_t r = wk_rand(&t->rng);
        curfew_worker_ref *s = NULL, *wr = NULL;
        int rc = curfew_worker_ref_strong(sh->w, "taker", &s);
        if (rc == 0) {
            atomic_fetch_add(&sh->strong_held, 1);
            t->taken_strong++;
            t->take_after_refusal += t->refused_strong;
        } else {
            CHECK_EQ(rc, -ESHUTDOWN);
            CHECK(curfew_worker_state(sh->w) >= CURFEW_WORKER_CANCELING);
            t->refused_strong = 1;
        }
        rc = curfew_worker_ref_weak(sh->w, "taker-weak", many_weak_told, sh,
                                    &wr);
        if (rc == 0) {
            t->taken_weak++;
            t->take_after_refusal += t->refused_weak;
        } else {
            CHECK_EQ(rc, -ESHUTDOWN);
            t->refused_weak = 1;
        }
        if (r % 8 == 0)
            wk_sleep_us((r >> 8) % 100);
        if (wr)
            CHECK_EQ(curfew_worker_ref_release(wr), 0);
        if (s) {
            atomic_fetch_sub(&sh->strong_held, 1);
            CHECK_EQ(curfew_worker_ref_release(s), 0);
        }
    }
    return NULL;
}

TEST(wk_refs_many_threads)
{
    /* K2: strong and weak references taken and released from many threads
     * while the worker is cancelled. Once a take is refused with
     * -ESHUTDOWN, every later one is too; KILLING comes only when no strong
     * reference is held; weak callbacks run on the worker's thread. Meant
     * for the TSan build as much as for the plain one. */
    uint32_t rng = wk_seed("wk_refs_many_threads");
    int rounds = wk_tsan() ? 10 : 40;
    int total_strong = 0, total_weak_calls = 0;
    for (int round = 0; round < rounds; round++) {
        struct shared sh;
        memset(&sh, 0, sizeof(sh));
        sh.w = start_plain("shared", many_killing, &sh);
        struct thread_note tn;
        sh.wth = worker_thread(sh.w, &tn);
        struct taker t[NTAKERS];
        for (int i = 0; i < NTAKERS; i++) {
            memset(&t[i], 0, sizeof(t[i]));
            t[i].sh = &sh;
            t[i].rng = wk_rand(&rng);
            CHECK_EQ(pthread_create(&t[i].th, NULL, taker_main, &t[i]), 0);
        }
        wk_sleep_us(1000 + wk_rand(&rng) % 5000);
        CHECK_EQ(curfew_worker_cancel(sh.w), 0);
        for (int i = 0; i < NTAKERS; i++) {
            CHECK_EQ(pthread_join(t[i].th, NULL), 0);
            CHECK_EQ(t[i].take_after_refusal, 0);
            total_strong += t[i].taken_strong;
        }
        CHECK_EQ(curfew_worker_join(sh.w, 5000), 0);
        CHECK_EQ(atomic_load(&sh.killing_calls), 1);
        CHECK_EQ(atomic_load(&sh.held_at_killing), 0);
        curfew_worker_stats st;
        CHECK_EQ(curfew_worker_stats_get(sh.w, &st), 0);
        CHECK_EQ(st.strong_refs, 0);
        CHECK_EQ(st.weak_refs, 0);
        total_weak_calls += atomic_load(&sh.weak_calls);
        CHECK_EQ(curfew_worker_free(sh.w), 0);
    }
    fprintf(stderr, "%d strong references taken, %d weak callbacks\n",
            total_strong, total_weak_calls);
    CHECK(total_strong > 0);
}

/* Weak references released by their owners at the moment the worker tells
 * them: the owner's release and the worker's callback race. */
#define NOWNERS 4
#define REFS_PER_OWNER 32

struct wref {
    curfew_worker_ref *ref;
    atomic_int released; /* curfew_worker_ref_release() returned */
    atomic_int calls;
    atomic_int late; /* the callback began after release returned */
};

struct owner {
    curfew_worker *w;
    pthread_t th;
    struct wref refs[REFS_PER_OWNER];
};

static void racing_told(curfew_worker_ref *ref, void *arg)
{
    (void)ref;
    struct wref *r = arg;
    if (atomic_load(&r->released))
        atomic_fetch_add(&r->late, 1);
    atomic_fetch_add(&r->calls, 1);
}

static void *owner_main(void *p)
{
    struct owner *o = p;
    while (curfew_worker_state(o->w) < CURFEW_WORKER_CANCELING)
        ;
    /* Newest first: the order in which the worker tells them, so that
     * the two meet. */
    for (int i = REFS_PER_OWNER - 1; i >= 0; i--) {
        CHECK_EQ(curfew_worker_ref_release(o->refs[i].ref), 0);
        atomic_store(&o->refs[i].released, 1);
    }
    return NULL;
}

TEST(wk_weak_release_races_telling)
{
    /* K2: owners release their weak references just as the worker reaches
     * CANCELING and tells them. Each callback runs at most once, and never
     * after its reference's release returned (the owner may free what
     * `arg` points at right after releasing). Run under ASan and TSan:
     * a callback reading a freed reference shows there. */
    int rounds = wk_tsan() ? 40 : 200;
    int calls = 0, late = 0;
    for (int round = 0; round < rounds; round++) {
        curfew_worker *w = start_plain("told", NULL, NULL);
        struct owner *o = calloc(NOWNERS, sizeof(*o));
        CHECK(o != NULL);
        for (int i = 0; i < NOWNERS; i++) {
            o[i].w = w;
            for (int j = 0; j < REFS_PER_OWNER; j++)
                CHECK_EQ(curfew_worker_ref_weak(w, "owned", racing_told,
                                                &o[i].refs[j],
                                                &o[i].refs[j].ref),
                         0);
        }
        for (int i = 0; i < NOWNERS; i++)
            CHECK_EQ(pthread_create(&o[i].th, NULL, owner_main, &o[i]), 0);
        CHECK_EQ(curfew_worker_cancel(w), 0);
        for (int i = 0; i < NOWNERS; i++)
            CHECK_EQ(pthread_join(o[i].th, NULL), 0);
        CHECK_EQ(curfew_worker_join(w, 5000), 0);
        for (int i = 0; i < NOWNERS; i++)
            for (int j = 0; j < REFS_PER_OWNER; j++) {
                CHECK(atomic_load(&o[i].refs[j].calls) <= 1);
                calls += atomic_load(&o[i].refs[j].calls);
                late += atomic_load(&o[i].refs[j].late);
            }
        CHECK_EQ(curfew_worker_free(w), 0);
        free(o);
    }
    fprintf(stderr, "%d callbacks, %d began after their release returned\n",
            calls, late);
    CHECK_EQ(late, 0);
}

/* ---- K5: curfew_worker_describe_refs ------------------------------------ */

/* The call site K5 must show: keep the two lines together. */
static int take_held_ref(curfew_worker *w, curfew_worker_ref **out, int *line)
{
    *line = __LINE__ + 1;
    return curfew_worker_ref_strong(w, "telemetry-flush", out);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

TEST(wk_describe_refs)
{
    /* K5: curfew_worker_describe_refs() lists every strong reference held
     * as "name (file:line in func)", joined by ", ", returns their number,
     * leaves weak and released ones out and cuts to the buffer. */
    curfew_worker *w = start_plain("described", NULL, NULL);
    char buf[512];
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(curfew_worker_describe_refs(w, buf, sizeof(buf)), 0);
    CHECK_STR(buf, "");
    curfew_worker_ref *held, *other, *gone, *weak;
    int line = 0;
    CHECK_EQ(take_held_ref(w, &held, &line), 0);
    CHECK_EQ(curfew_worker_ref_strong(w, "other", &other), 0);
    int other_line = __LINE__ - 1;
    CHECK_EQ(curfew_worker_ref_strong(w, "gone", &gone), 0);
    CHECK_EQ(curfew_worker_ref_weak(w, "weakling", NULL, NULL, &weak), 0);
    CHECK_EQ(curfew_worker_ref_release(gone), 0);

    CHECK_EQ(curfew_worker_describe_refs(w, buf, sizeof(buf)), 2);
    char want[256];
    snprintf(want, sizeof(want), "telemetry-flush (%s:%d in take_held_ref)",
             __FILE__, line);
    CHECK(strstr(buf, want) != NULL);
    snprintf(want, sizeof(want), "other (%s:%d in test_wk_describe_refs)",
             __FILE__, other_line);
    CHECK(strstr(buf, want) != NULL);
    CHECK(strstr(buf, ", ") != NULL);
    CHECK(strstr(buf, "gone") == NULL);
    CHECK(strstr(buf, "weakling") == NULL);
    size_t full = strlen(buf);

    /* Cut to the buffer, NUL-terminated; the count is still 2. */
    char small[16];
    memset(small, 'x', sizeof(small));
    CHECK_EQ(curfew_worker_describe_refs(w, small, sizeof(small)), 2);
    CHECK_EQ(strlen(small), sizeof(small) - 1);
    CHECK(strncmp(small, buf, sizeof(small) - 1) == 0);
    /* No buffer: only the count. */
    CHECK_EQ(curfew_worker_describe_refs(w, NULL, 0), 2);
    CHECK_EQ(curfew_worker_describe_refs(w, buf, 0), 2);
    CHECK(full > sizeof(small));

    CHECK_EQ(curfew_worker_ref_release(other), 0);
    CHECK_EQ(curfew_worker_describe_refs(w, buf, sizeof(buf)), 1);
    CHECK(strstr(buf, "telemetry-flush") != NULL);
    CHECK(strstr(buf, "other") == NULL);
    CHECK(strstr(buf, base_name(__FILE__)) != NULL);
    CHECK_EQ(curfew_worker_ref_release(held), 0);
    CHECK_EQ(curfew_worker_ref_release(weak), 0);
    CHECK_EQ(curfew_worker_describe_refs(w, buf, sizeof(buf)), 0);
    CHECK_STR(buf, "");
    CHECK_EQ(curfew_worker_cancel(w), 0);
    CHECK_EQ(curfew_worker_join(w, 5000), 0);
    CHECK_EQ(curfew_worker_free(w), 0);
}

/* ---- K5: the hang report ------------------------------------------------ */

/* The watchdog's deadline in wk_hang. "short-lived" is released by a
 * thread that polls for CANCELING; on a loaded machine (TSan, 2 cores)
 * that thread may wait a few hundred ms for a CPU, and a report written
 * before it ran would rightly still name the reference: leave it time. */
#define HANG_MS 1500

static const curfew_phase_config hang_phases[] = {{"drain", 0, 0},
                                                  {"telemetry", 0, 0}};

struct hang_child {
    curfew_worker *w;
    curfew_worker_ref *release_at_canceling;
    wk_gate forever; /* never opened */
    wk_hold stuck;   /* a task held for good */
};

static void *release_when_canceling(void *p)
{
    struct hang_child *h = p;
    while (curfew_worker_state(h->w) < CURFEW_WORKER_CANCELING)
        wk_sleep_us(500);
    curfew_worker_ref_release(h->release_at_canceling);
    return NULL;
}

static void stuck_killing(curfew_worker *w, void *arg)
{
    (void)w;
    struct hang_child *h = arg;
    wk_gate_wait(&h->forever);
}

/* argv: dir, mode. Mode "held": the worker waits in CANCELING for
 * "telemetry-flush", never released; "short-lived", released once the
 * worker is CANCELING, must not be named. Mode "task" / "killing": the only
 * strong reference, "short-lived", is released at CANCELING, and the
 * worker then hangs in a BLOCK_SHUTDOWN task / in on_killing. The watchdog
 * ends the process with 70 after writing dir/report.json. */
CHILD(wk_hang)
{
    if (argc < 2)
        return 2;
    const char *dir = argv[0], *mode = argv[1];
    char report[WK_PATH];
    wk_path(report, sizeof(report), dir, "report.json");
    struct hang_child h;
    memset(&h, 0, sizeof(h));
    wk_gate_init(&h.forever);
    wk_hold_init(&h.stuck);
    curfew_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.phases = hang_phases;
    cfg.phase_count = 2;
    cfg.crash_after_ms = HANG_MS;
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.report_path = report;
    cfg.process_name = "wk-hang";
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 100;
    curfew_worker_config wc;
    memset(&wc, 0, sizeof(wc));
    wc.name = "flusher";
    wc.cf = cf;
    wc.phase = "drain";
    if (strcmp(mode, "killing") == 0) {
        wc.on_killing = stuck_killing;
        wc.arg = &h;
    }
    if (curfew_worker_start(&wc, &h.w) != 0)
        return 101;
    curfew_worker_ref *held;
    int line;
    if (strcmp(mode, "held") == 0 && take_held_ref(h.w, &held, &line) != 0)
        return 102;
    if (curfew_worker_ref_strong(h.w, "short-lived", &h.release_at_canceling))
        return 103;
    if (strcmp(mode, "task") == 0 &&
        curfew_worker_post(h.w, CURFEW_TASK_BLOCK_SHUTDOWN, wk_hold_task,
                           &h.stuck) != 0)
        return 104;
    pthread_t th;
    if (pthread_create(&th, NULL, release_when_canceling, &h) != 0)
        return 105;
    pthread_detach(th); /* never joined: the process ends in the watchdog */
    if (curfew_begin(cf) != 0)
        return 106;
    curfew_run(cf); /* the watchdog _exits with 70 */
    return 107;
}

static curfew__jval *parse_report(const char *dir, char **text_out)
{
    char path[WK_PATH];
    wk_path(path, sizeof(path), dir, "report.json");
    size_t len;
    char *text = wk_read_file(path, &len);
    if (!text)
        th_fail(__FILE__, __LINE__, "no report at %s", path);
    curfew__jval *v = NULL;
    char err[128];
    if (curfew__json_parse(text, len, &v, err, sizeof(err)) != 0)
        th_fail(__FILE__, __LINE__, "report does not parse: %s\n%s", err, text);
    *text_out = text;
    return v;
}

/* The condition (pending blocker) named name in the report. */
static const curfew__jval *condition(const curfew__jval *rep, const char *name)
{
    const curfew__jval *conds = curfew__json_get(rep, "conditions");
    CHECK(conds != NULL && conds->type == CURFEW__J_ARR);
    for (size_t i = 0; i < conds->n; i++) {
        const char *n =
            curfew__json_str(curfew__json_get(&conds->items[i], "name"));
        if (n && strcmp(n, name) == 0)
            return &conds->items[i];
    }
    return NULL;
}

static void run_hang_child(const char *mode, char *dir, size_t size,
                           curfew__jval **rep, char **text)
{
    wk_tmpdir(dir, size);
    pid_t pid = th_spawn_child("wk_hang", dir, mode, (char *)NULL);
    int status = th_wait_child(pid, 20000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 70)
        th_fail(__FILE__, __LINE__, "child (%s) ended with status 0x%x", mode,
                status);
    *rep = parse_report(dir, text);
    CHECK_STR(curfew__json_str(curfew__json_get(*rep, "type")), "curfew-hang");
    CHECK_STR(curfew__json_str(curfew__json_get(*rep, "phase")), "drain");
}

TEST(wk_hang_report_names_refs)
{
    /* K5: a worker stuck in CANCELING because "telemetry-flush" is never
     * released: the hang report's condition for the worker names that
     * reference with its file:line (and function), and not the reference
     * released meanwhile. */
    char dir[WK_PATH];
    curfew__jval *rep;
    char *text;
    run_hang_child("held", dir, sizeof(dir), &rep, &text);
    const curfew__jval *c = condition(rep, "flusher");
    if (!c)
        th_fail(__FILE__, __LINE__, "no condition \"flusher\" in\n%s", text);
    const char *status = curfew__json_str(curfew__json_get(c, "status"));
    CHECK(status != NULL);
    fprintf(stderr, "status: %s\n", status);
    curfew_worker_ref *unused;
    int line = 0;
    CHECK_EQ(take_held_ref(NULL, &unused, &line), -EINVAL);
    char site[256];
    snprintf(site, sizeof(site), "%s:%d", base_name(__FILE__), line);
    CHECK(strstr(status, "telemetry-flush") != NULL);
    CHECK(strstr(status, site) != NULL);
    CHECK(strstr(status, "take_held_ref") != NULL);
    CHECK(strstr(status, "canceling") != NULL);
    CHECK(strstr(status, "short-lived") == NULL);
    curfew__json_free(rep);
    free(text);
    wk_rmdir(dir);
}

TEST(wk_hang_report_no_released_ref)
{
    /* K5: "the strong references still held" — once the last one is
     * released, a worker that hangs later (in a BLOCK_SHUTDOWN task, or in
     * on_killing) must not be reported as waiting for it. */
    const char *modes[] = {"task", "killing"};
    for (int i = 0; i < 2; i++) {
        char dir[WK_PATH];
        curfew__jval *rep;
        char *text;
        run_hang_child(modes[i], dir, sizeof(dir), &rep, &text);
        const curfew__jval *c = condition(rep, "flusher");
        if (!c)
            th_fail(__FILE__, __LINE__, "no condition \"flusher\" in\n%s",
                    text);
        const char *status = curfew__json_str(curfew__json_get(c, "status"));
        fprintf(stderr, "%s: status: %s\n", modes[i],
                status ? status : "(none)");
        if (status && strstr(status, "short-lived"))
            th_fail(__FILE__, __LINE__,
                    "%s: the report blames a released reference: %s", modes[i],
                    status);
        curfew__json_free(rep);
        free(text);
        wk_rmdir(dir);
    }
}
