/* Where a blocker was added and what it is called survive the compact slot
 * layout: call sites kept once per distinct site, names inline up to 15
 * bytes and on the heap beyond, end times in the control word.
 *
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE
#include "core_util.h"
#include "harness.h"
#include "report/jsonr.h"

#include <curfew.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static curfew *one_phase(void)
{
    static const curfew_phase_config ph[] = {
        {"only", CURFEW_NEVER, CURFEW_NEVER}};
    curfew_config cfg = {0};
    cfg.phases = ph;
    cfg.phase_count = 1;
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    return cf;
}

static int pending(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_PENDING;
}

/* The state report (R1's shape) of cf, parsed. */
static curfew__jval *state_report(curfew *cf)
{
    int fd = memfd_create("sites", MFD_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_EQ(curfew_report_write_state(cf, fd), 0);
    off_t len = lseek(fd, 0, SEEK_END);
    CHECK(len > 0);
    char *text = malloc((size_t)len);
    CHECK(text != NULL);
    CHECK_EQ(pread(fd, text, (size_t)len, 0), (ssize_t)len);
    close(fd);
    curfew__jval *v = NULL;
    char err[128];
    CHECK_EQ(curfew__json_parse(text, (size_t)len, &v, err, sizeof(err)), 0);
    free(text);
    return v;
}

static const curfew__jval *condition(const curfew__jval *rep, const char *name)
{
    const curfew__jval *c = curfew__json_get(rep, "conditions");
    CHECK(c && c->type == CURFEW__J_ARR);
    for (size_t i = 0; i < c->n; i++) {
        const char *n =
            curfew__json_str(curfew__json_get(&c->items[i], "name"));
        if (n && strcmp(n, name) == 0)
            return &c->items[i];
    }
    return NULL;
}

/* R1: every pending blocker names the file, line and function it was added
 * from. 300 distinct call sites (the table grows many times) and the same
 * sites again, each blocker with its own. */
TEST(sites_many_distinct)
{
    static const char *files[] = {"alpha.c", "beta.c", "gamma.c"};
    static const char *funcs[] = {"open_db", "flush_cache", "close_tabs",
                                  "stop_gpu", "save_session"};
    curfew *cf = one_phase();
    curfew_barrier *b = curfew_phase(cf, "only");
    enum { SITES = 300, ROUNDS = 2 };
    static curfew_blocker hs[SITES * ROUNDS];
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < SITES; i++) {
            char name[32];
            snprintf(name, sizeof(name), "b%d-%d", round, i);
            CHECK_EQ(curfew_add_blocker_at(b, name, pending, NULL,
                                           &hs[round * SITES + i], files[i % 3],
                                           1000 + i, funcs[i % 5]),
                     0);
        }
    }
    CHECK_EQ(curfew_begin(cf), 0);
    cu_pump(cf);
    curfew__jval *rep = state_report(cf);
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < SITES; i++) {
            char name[32];
            snprintf(name, sizeof(name), "b%d-%d", round, i);
            const curfew__jval *c = condition(rep, name);
            CHECK(c != NULL);
            CHECK_STR(curfew__json_str(curfew__json_get(c, "file")),
                      files[i % 3]);
            CHECK_EQ(curfew__json_int(curfew__json_get(c, "line"), -1),
                     1000 + i);
            CHECK_STR(curfew__json_str(curfew__json_get(c, "function")),
                      funcs[i % 5]);
        }
    }
    curfew__json_free(rep);
    for (int i = 0; i < SITES * ROUNDS; i++)
        CHECK_EQ(curfew_blocker_done(hs[i]), 0);
    CHECK_EQ(cu_drive(cf, 10000, -1), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* B1: names of every length around the inline limit (15 bytes kept in the
 * slot, 16 and more copied to the heap) come back whole, also through a
 * slot reused before the shutdown, where a short name follows a long one
 * and the other way round. */
TEST(names_around_inline_limit)
{
    curfew *cf = one_phase();
    curfew_barrier *b = curfew_phase(cf, "only");
    char name[64], got[64];
    /* Enough finished blockers that slots are reused (more than 64). */
    for (int round = 0; round < 6; round++) {
        curfew_blocker hs[40];
        for (int len = 1; len <= 40; len++) {
            memset(name, 'a' + (len + round) % 26, (size_t)len);
            name[len] = '\0';
            int want = round % 2 ? 41 - len : len;
            name[want] = '\0';
            CHECK_EQ(curfew_add_blocker(b, name, NULL, NULL, &hs[len - 1]), 0);
            CHECK_EQ(
                curfew_blocker_describe(hs[len - 1], got, sizeof(got), NULL, 0),
                0);
            CHECK_STR(got, name);
        }
        for (int i = 0; i < 40; i++)
            CHECK_EQ(curfew_blocker_done(hs[i]), 0);
    }
    /* One of each length left pending into the report. */
    curfew_blocker left[6];
    for (int len = 13; len <= 18; len++) {
        memset(name, 'x', (size_t)len);
        name[len] = '\0';
        CHECK_EQ(curfew_add_blocker(b, name, pending, NULL, &left[len - 13]),
                 0);
    }
    CHECK_EQ(curfew_begin(cf), 0);
    cu_pump(cf);
    curfew__jval *rep = state_report(cf);
    for (int len = 13; len <= 18; len++) {
        memset(name, 'x', (size_t)len);
        name[len] = '\0';
        CHECK(condition(rep, name) != NULL);
    }
    curfew__json_free(rep);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(curfew_blocker_done(left[i]), 0);
    CHECK_EQ(cu_drive(cf, 10000, -1), 1);
    CHECK_EQ(curfew_destroy(cf), 0);
}

/* R2: a blocker's end time (kept in its control word) is its finish time,
 * after its start, within the phase; a stale handle still gets -ENOENT
 * (B1) and a second done -EALREADY (B4). */
TEST(end_time_in_record)
{
    char dir[] = "/tmp/curfew-sites-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char rec[128];
    snprintf(rec, sizeof(rec), "%s/record.json", dir);
    static const curfew_phase_config ph[] = {
        {"only", CURFEW_NEVER, CURFEW_NEVER}};
    curfew_config cfg = {0};
    cfg.phases = ph;
    cfg.phase_count = 1;
    cfg.record_path = rec;
    curfew *cf = NULL;
    CHECK_EQ(curfew_create(&cf, &cfg), 0);
    curfew_blocker slow, fast;
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "only"), "slow", pending, NULL,
                                &slow),
             0);
    CHECK_EQ(curfew_add_blocker(curfew_phase(cf, "only"), "fast", pending, NULL,
                                &fast),
             0);
    CHECK_EQ(curfew_begin(cf), 0);
    cu_pump(cf);
    CHECK_EQ(curfew_blocker_done(fast), 0);
    CHECK_EQ(curfew_blocker_done(fast), -EALREADY);
    th_sleep_ms(120);
    CHECK_EQ(curfew_blocker_done(slow), 0);
    CHECK_EQ(cu_drive(cf, 10000, -1), 1);
    curfew_blocker stale = slow;
    stale.id ^= (uint64_t)1 << 32;
    CHECK_EQ(curfew_blocker_done(stale), -ENOENT);

    FILE *f = fopen(rec, "r");
    CHECK(f != NULL);
    char text[8192];
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    curfew__jval *v = NULL;
    CHECK_EQ(curfew__json_parse(text, n, &v, NULL, 0), 0);
    const curfew__jval *phases = curfew__json_get(v, "phases");
    CHECK(phases && phases->n == 1);
    int64_t pend =
        curfew__json_int(curfew__json_get(&phases->items[0], "end_ms"), -1);
    const curfew__jval *bl = curfew__json_get(&phases->items[0], "blockers");
    CHECK(bl && bl->n == 2);
    int64_t end_slow = -1, end_fast = -1;
    for (size_t i = 0; i < bl->n; i++) {
        const char *name =
            curfew__json_str(curfew__json_get(&bl->items[i], "name"));
        int64_t s =
            curfew__json_int(curfew__json_get(&bl->items[i], "start_ms"), -1);
        int64_t e =
            curfew__json_int(curfew__json_get(&bl->items[i], "end_ms"), -1);
        CHECK_STR(curfew__json_str(curfew__json_get(&bl->items[i], "result")),
                  "ok");
        CHECK(s >= 0 && e >= s && e <= pend);
        if (strcmp(name, "slow") == 0)
            end_slow = e;
        else
            end_fast = e;
    }
    CHECK(end_fast >= 0 && end_slow >= end_fast + 100);
    curfew__json_free(v);
    CHECK_EQ(curfew_destroy(cf), 0);
    unlink(rec);
    rmdir(dir);
}
