/* install.pkgconfig (S5): a program outside the tree, built with
 * `pkg-config --cflags --libs curfew`, runs one whole shutdown.
 * Exits 0 when every call returned what the documentation says, 1 otherwise.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <curfew.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int failures;

#define EXPECT(cond)                                                          \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "hello.c:%d: unexpected: %s\n", __LINE__, #cond); \
            failures++;                                                       \
        }                                                                     \
    } while (0)

#define EXPECT_RC(call, want)                                             \
    do {                                                                  \
        int rc_ = (call);                                                 \
        if (rc_ != (want)) {                                              \
            fprintf(stderr, "hello.c:%d: %s returned %d (%s), want %d\n", \
                    __LINE__, #call, rc_, curfew_strerror(rc_), (want));  \
            failures++;                                                   \
        }                                                                 \
    } while (0)

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

struct writer {
    curfew *cf;
    curfew_blocker blocker;
    int waited;   /* 1 if persist began before the writer finished */
    int done_rc;  /* the first curfew_blocker_done() */
    int again_rc; /* the second one */
};

/* A service thread: waits for the "persist" phase, then finishes its
 * blocker, as a thread that flushes data at shutdown would. */
static void *writer_main(void *p)
{
    struct writer *w = p;
    for (int i = 0; i < 10000; i++) {
        if (curfew_in_or_beyond(w->cf, "persist") == 1) {
            w->waited = 1;
            break;
        }
        sleep_ms(1);
    }
    curfew_blocker_status(w->blocker, "flushing %d records", 3);
    sleep_ms(20);
    w->done_rc = curfew_blocker_done(w->blocker);
    w->again_rc = curfew_blocker_done(w->blocker);
    return NULL;
}

static int trigger_calls;

static int quick_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    trigger_calls++;
    return CURFEW_DONE;
}

int main(void)
{
    curfew *cf = NULL;
    EXPECT_RC(curfew_create(&cf, NULL), 0);
    if (!cf)
        return 1;
    EXPECT(curfew_phase_count(cf) == 7);
    EXPECT(curfew_current_phase(cf) == NULL);
    EXPECT_RC(curfew_in_or_beyond(cf, "persist"), 0);
    EXPECT_RC(curfew_in_or_beyond(cf, "no-such-phase"), -EINVAL);

    curfew_barrier *persist = curfew_phase(cf, "persist");
    curfew_barrier *final = curfew_phase(cf, "final");
    EXPECT(persist != NULL);
    EXPECT(final != NULL);
    if (!persist || !final)
        return 1;

    struct writer w = {cf, {0}, 0, 1, 1};
    EXPECT_RC(
        curfew_add_blocker(persist, "hello writer", NULL, NULL, &w.blocker), 0);
    curfew_blocker quick = {0};
    EXPECT_RC(
        curfew_add_blocker(final, "hello quick", quick_trigger, NULL, &quick),
        0);
    EXPECT_RC(curfew_add_blocker(persist, "", NULL, NULL, NULL), -EINVAL);

    pthread_t thread;
    if (pthread_create(&thread, NULL, writer_main, &w) != 0) {
        fprintf(stderr, "hello.c: pthread_create failed\n");
        return 1;
    }

    EXPECT_RC(curfew_begin(cf), 0);
    EXPECT_RC(curfew_begin(cf), -EALREADY);
    const char *first = curfew_current_phase(cf);
    EXPECT(first != NULL && strcmp(first, "stop-accepting") == 0);
    EXPECT_RC(curfew_run(cf), 0);
    pthread_join(thread, NULL);

    EXPECT(w.waited == 1);
    EXPECT_RC(w.done_rc, 0);
    EXPECT_RC(w.again_rc, -EALREADY);
    EXPECT(trigger_calls == 1);
    EXPECT_RC(curfew_is_complete(cf), 1);
    EXPECT_RC(curfew_dispatch(cf), 1);
    const char *last = curfew_current_phase(cf);
    EXPECT(last != NULL && strcmp(last, "final") == 0);
    EXPECT_RC(curfew_barrier_state(persist), CURFEW_COMPLETE);

    int err = -1;
    EXPECT_RC(curfew_blocker_result(w.blocker, &err), CURFEW_RESULT_OK);
    EXPECT(err == 0);
    EXPECT_RC(curfew_blocker_result(quick, NULL), CURFEW_RESULT_OK);

    char name[64], status[CURFEW_STATUS_MAX + 1];
    EXPECT_RC(curfew_blocker_describe(w.blocker, name, sizeof name, status,
                                      sizeof status),
              1);
    EXPECT(strcmp(name, "hello writer") == 0);
    EXPECT(strcmp(status, "flushing 3 records") == 0);

    /* The failed add above is a broken registration (B5). */
    EXPECT_RC(curfew_broken_registrations(cf, NULL, 0), 1);
    EXPECT_RC(curfew_add_blocker(persist, "too late", NULL, NULL, NULL),
              -ESHUTDOWN);

    EXPECT_RC(curfew_destroy(cf), 0);

    if (failures) {
        fprintf(stderr, "hello.c: %d unexpected results\n", failures);
        return 1;
    }
    printf("hello: curfew shut down cleanly\n");
    return 0;
}
