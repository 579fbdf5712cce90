/* Tests for curfew_record_read_previous(): the shutdown record (R2) read
 * back at the next start, from records real shutdowns wrote in child
 * processes (W3 for the one that hangs) and from damaged files.
 *
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

#include <curfew/core.h>
#include <curfew/report.h>

#include "report/jsonr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- a second copy of the reader with failing allocations ---------------
 *
 * As in test_jsonr.c: jsonr.c and previous.c compiled once more into this
 * test, their allocations counted and failed on demand, their entry points
 * renamed and static.
 */
static long fi_fail_at = -1;
static long fi_count;
static long fi_live;

static void *fi_malloc(size_t n)
{
    if (fi_count++ == fi_fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        fi_live++;
    return p;
}

static void *fi_realloc(void *old, size_t n)
{
    if (fi_count++ == fi_fail_at)
        return NULL;
    void *p = realloc(old, n);
    if (p && !old)
        fi_live++;
    return p;
}

static void fi_free(void *p)
{
    if (p)
        fi_live--;
    free(p);
}

static int fi_json_parse(const char *text, size_t len, curfew__jval **out,
                         char *err, size_t errsize);
static void fi_json_free(curfew__jval *v);
static const curfew__jval *fi_json_get(const curfew__jval *v, const char *k);
static const char *fi_json_str(const curfew__jval *v);
static int64_t fi_json_int(const curfew__jval *v, int64_t dflt);
static int fi_read_previous(const char *path, curfew_previous *out);

#define malloc fi_malloc
#define realloc fi_realloc
#define free fi_free
#define curfew__json_parse fi_json_parse
#define curfew__json_free fi_json_free
#define curfew__json_get fi_json_get
#define curfew__json_str fi_json_str
#define curfew__json_int fi_json_int
#define curfew_record_read_previous fi_read_previous
#include "report/jsonr.c"
#include "report/previous.c"
#undef malloc
#undef realloc
#undef free
#undef curfew__json_parse
#undef curfew__json_free
#undef curfew__json_get
#undef curfew__json_str
#undef curfew__json_int
#undef curfew_record_read_previous

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[64];

static void rm_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

/* A file name in this test's own directory, removed at exit. */
static const char *tmp_path(const char *name)
{
    static char paths[8][256];
    static int next;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/curfew-prev-XXXXXX");
        CHECK(mkdtemp(tmpdir) != NULL);
        atexit(rm_tmpdir);
    }
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const char *data, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, data, n), (ssize_t)n);
    CHECK_EQ(close(fd), 0);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    char *buf = malloc(1 << 20);
    CHECK(buf != NULL);
    *n = fread(buf, 1, (1 << 20) - 1, f);
    buf[*n] = '\0';
    fclose(f);
    return buf;
}

static int read_text(const char *text, curfew_previous *out)
{
    const char *p = tmp_path("record.json");
    write_file(p, text, strlen(text));
    return curfew_record_read_previous(p, out);
}

/* Runs the child helper name with the record path; returns its wait
 * status. */
static int run_child(const char *name, const char *record, const char *extra)
{
    pid_t pid = th_spawn_child(name, record, extra, (char *)NULL);
    return th_wait_child(pid, 30000);
}

static int pending_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_PENDING; /* and never done */
}

static int done_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    return CURFEW_DONE;
}

/* ---- child processes that leave a record -------------------------------- */

/* A full teardown that completes (R2: clean). */
CHILD(prev_clean)
{
    if (argc < 1)
        return 90;
    curfew_config cfg = {0};
    cfg.record_path = argv[0];
    cfg.process_name = "prev-clean";
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 91;
    if (curfew_add_blocker(curfew_phase(cf, "persist"), "history db",
                           done_trigger, NULL, NULL) != 0 ||
        curfew_add_blocker(curfew_phase(cf, "drain"), "requests", done_trigger,
                           NULL, NULL) != 0)
        return 92;
    if (curfew_begin(cf) != 0 || curfew_run(cf) != 0)
        return 93;
    return curfew_destroy(cf) == 0 ? 0 : 94;
}

/* W3 + R2: blockers in "persist" that never finish; the watchdog exits the
 * process with status 3 after crash_after_ms. argv[1] names the blocker
 * "special" for the escaping test, else "history db" and "cache" hang. */
CHILD(prev_hang)
{
    if (argc < 2)
        return 90;
    char report[512];
    snprintf(report, sizeof(report), "%s.hang", argv[0]);
    curfew_config cfg = {0};
    cfg.record_path = argv[0];
    cfg.report_path = report;
    cfg.process_name = "prev-hang";
    cfg.crash_after_ms = 300;
    cfg.on_timeout = CURFEW_TIMEOUT_EXIT;
    cfg.timeout_exit_code = 3;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 91;
    curfew_barrier *persist = curfew_phase(cf, "persist");
    int r = 0;
    if (strcmp(argv[1], "special") == 0) {
        /* R4: quote, backslash, newline, control byte, UTF-8 and a byte
         * that is not UTF-8. */
        r |= curfew_add_blocker(persist, "q\"b\\n\nc\x01 \xc3\xa9 \xff",
                                pending_trigger, NULL, NULL);
    } else {
        r |= curfew_add_blocker(persist, "prefs", done_trigger, NULL, NULL);
        r |= curfew_add_blocker(persist, "history db", pending_trigger, NULL,
                                NULL);
        r |= curfew_add_blocker(persist, "cache", NULL, NULL, NULL);
    }
    r |= curfew_add_blocker(curfew_phase(cf, "drain"), "requests", done_trigger,
                            NULL, NULL);
    if (r != 0)
        return 92;
    if (curfew_begin(cf) != 0)
        return 93;
    curfew_run(cf); /* the watchdog ends the process in here */
    return 94;
}

/* C5: a fast exit after "persist" is a clean shutdown. */
CHILD(prev_fast)
{
    if (argc < 1)
        return 90;
    curfew_config cfg = {0};
    cfg.record_path = argv[0];
    cfg.process_name = "prev-fast";
    cfg.exit_after = "persist";
    cfg.exit_code = 5;
    curfew *cf;
    if (curfew_create(&cf, &cfg) != 0)
        return 91;
    if (curfew_begin(cf) != 0)
        return 93;
    curfew_run(cf);
    return 94;
}

/* ---- records written by real shutdowns ---------------------------------- */

TEST(prev_clean_full_shutdown)
{
    const char *rec = tmp_path("clean.json");
    pid_t pid = th_spawn_child("prev_clean", rec, (char *)NULL);
    int st = th_wait_child(pid, 30000);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);

    curfew_previous prev;
    memset(&prev, 0x55, sizeof(prev));
    CHECK_EQ(curfew_record_read_previous(rec, &prev), 0);
    CHECK_EQ(prev.clean, 1); /* R2: every phase completed */
    CHECK_EQ(prev.pid, pid);
    CHECK_STR(prev.process, "prev-clean");
    CHECK_STR(prev.phase, "final"); /* the last phase that began */
    CHECK_EQ(prev.pending, 0);
    CHECK_STR(prev.blockers, "");
    const char *want = "the last shutdown completed cleanly in ";
    CHECK(strncmp(prev.summary, want, strlen(want)) == 0);
    CHECK(strcmp(prev.summary + strlen(prev.summary) - 3, " ms") == 0);
}

TEST(prev_hang_in_persist)
{
    const char *rec = tmp_path("hang.json");
    pid_t pid = th_spawn_child("prev_hang", rec, "plain", (char *)NULL);
    int64_t t0 = th_now_ms();
    int st = th_wait_child(pid, 30000);
    int64_t took = th_now_ms() - t0;
    /* W3: CURFEW_TIMEOUT_EXIT is _exit(timeout_exit_code). */
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 3)
        th_fail(__FILE__, __LINE__, "child: %s %d, expected exit status 3",
                WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    CHECK(took >= 300); /* not before crash_after_ms */

    curfew_previous prev;
    CHECK_EQ(curfew_record_read_previous(rec, &prev), 0);
    CHECK_EQ(prev.clean, 0); /* R2 */
    CHECK_EQ(prev.pid, pid);
    CHECK_STR(prev.process, "prev-hang");
    CHECK_STR(prev.phase, "persist");
    CHECK_EQ(prev.pending, 2);
    CHECK_STR(prev.blockers, "history db, cache");
    CHECK_STR(prev.summary, "the last shutdown did not finish: blocked in "
                            "persist by history db, cache");

    /* R1: the hang report the watchdog wrote names the same phase and
     * blockers. */
    char path[300];
    snprintf(path, sizeof(path), "%s.hang", rec);
    size_t n;
    char *text = slurp(path, &n);
    curfew__jval *doc;
    char err[200];
    if (curfew__json_parse(text, n, &doc, err, sizeof(err)) != 0)
        th_fail(__FILE__, __LINE__, "hang report: %s", err);
    CHECK_STR(curfew__json_str(curfew__json_get(doc, "type")), "curfew-hang");
    CHECK_STR(curfew__json_str(curfew__json_get(doc, "phase")), "persist");
    CHECK_EQ(curfew__json_int(curfew__json_get(doc, "timeout_ms"), -1), 300);
    const curfew__jval *conds = curfew__json_get(doc, "conditions");
    CHECK(conds && conds->type == CURFEW__J_ARR && conds->n == 2);
    CHECK_STR(curfew__json_str(curfew__json_get(&conds->items[0], "name")),
              "history db");
    CHECK_STR(curfew__json_str(curfew__json_get(&conds->items[1], "name")),
              "cache");
    curfew__json_free(doc);
    free(text);
}

/* R4: names are user data; whatever bytes they hold, the record stays
 * valid JSON and reads back as the same text (invalid UTF-8 as U+FFFD). */
TEST(prev_escaped_names)
{
    const char *rec = tmp_path("special.json");
    int st = run_child("prev_hang", rec, "special");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    curfew_previous prev;
    CHECK_EQ(curfew_record_read_previous(rec, &prev), 0);
    CHECK_EQ(prev.clean, 0);
    CHECK_EQ(prev.pending, 1);
    CHECK_STR(prev.blockers, "q\"b\\n\nc\x01 \xc3\xa9 \xef\xbf\xbd");
}

TEST(prev_fast_exit)
{
    const char *rec = tmp_path("fast.json");
    int st = run_child("prev_fast", rec, NULL);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 5); /* C5: _exit(exit_code) */
    curfew_previous prev;
    CHECK_EQ(curfew_record_read_previous(rec, &prev), 0);
    CHECK_EQ(prev.clean, 1); /* R2: a fast exit is a clean shutdown */
    CHECK_STR(prev.phase, "persist");
    CHECK_STR(prev.process, "prev-fast");
    CHECK(strncmp(prev.summary, "the last shutdown completed cleanly in ",
                  39) == 0);
    CHECK(strstr(prev.summary, " ms (fast exit after persist)") != NULL);
}

/* A crash can stop the writer anywhere; atomic rename means the file is
 * whole, but a copy or a disk error may not be: every cut is refused. */
TEST(prev_truncated_record)
{
    const char *rec = tmp_path("whole.json");
    int st = run_child("prev_hang", rec, "plain");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    size_t n;
    char *text = slurp(rec, &n);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    CHECK(n > 100);
    const char *cut = tmp_path("cut.json");
    curfew_previous prev;
    for (size_t k = 0; k < n; k++) {
        write_file(cut, text, k);
        int r = curfew_record_read_previous(cut, &prev);
        if (r != -EPROTO)
            th_fail(__FILE__, __LINE__, "prefix of %zu bytes: %d", k, r);
    }
    write_file(cut, text, n);
    CHECK_EQ(curfew_record_read_previous(cut, &prev), 0);
    CHECK_STR(prev.phase, "persist");
    free(text);
}

/* ---- hand-made records -------------------------------------------------- */

#define HEAD                                                            \
    "{\"type\":\"curfew-record\",\"version\":1,\"pid\":77,\"process\":" \
    "\"p\",\"exit_after\":null,"

TEST(prev_never_began)
{
    curfew_previous prev;
    CHECK_EQ(read_text(HEAD "\"clean\":false,\"phases\":["
                            "{\"name\":\"drain\",\"start_ms\":null,"
                            "\"end_ms\":null,\"blockers\":[]}]}",
                       &prev),
             0);
    CHECK_EQ(prev.clean, 0);
    CHECK_EQ(prev.pid, 77);
    CHECK_STR(prev.phase, "");
    CHECK_EQ(prev.pending, 0);
    CHECK_STR(prev.summary,
              "the last shutdown did not finish: it never began a phase");
}

TEST(prev_stopped_between_phases)
{
    curfew_previous prev;
    /* The last phase that began had completed; a crash came before the
     * next one began. Its finished blockers are not "pending". */
    CHECK_EQ(read_text(HEAD "\"clean\":false,\"phases\":["
                            "{\"name\":\"drain\",\"start_ms\":0,\"end_ms\":4,"
                            "\"blockers\":[{\"name\":\"a\",\"result\":\"ok\"},"
                            "{\"name\":\"b\",\"result\":\"timeout\"}]},"
                            "{\"name\":\"persist\",\"start_ms\":null,"
                            "\"end_ms\":null,\"blockers\":[]}]}",
                       &prev),
             0);
    CHECK_STR(prev.phase, "drain");
    CHECK_EQ(prev.pending, 0);
    CHECK_STR(prev.summary,
              "the last shutdown did not finish: it stopped after drain "
              "completed");
    CHECK_EQ(read_text(HEAD "\"clean\":false,\"phases\":["
                            "{\"name\":\"drain\",\"start_ms\":0,\"end_ms\":"
                            "null,\"blockers\":[]}]}",
                       &prev),
             0);
    CHECK_STR(prev.summary, "the last shutdown did not finish: it stopped in "
                            "drain with no blocker pending");
}

static int utf8_ok(const char *s)
{
    /* The strict reader is the judge of well-formed UTF-8. */
    char doc[1024];
    int n = snprintf(doc, sizeof(doc), "\"%s\"", s);
    curfew__jval *v;
    if (curfew__json_parse(doc, (size_t)n, &v, NULL, 0) != 0)
        return 0;
    curfew__json_free(v);
    return 1;
}

TEST(prev_blockers_cut)
{
    /* 40 pending names of 2-byte characters: far more than fits. */
    char doc[16384];
    size_t n = (size_t)snprintf(
        doc, sizeof(doc),
        "{\"type\":\"curfew-record\",\"version\":1,\"pid\":1,"
        "\"process\":\"%s\",\"clean\":false,\"phases\":[{\"name\":\"persist\","
        "\"start_ms\":3,\"end_ms\":null,\"blockers\":[",
        /* 40 x "é": 80 bytes, more than process[64] holds */
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(doc + n, sizeof(doc) - n,
                              "%s{\"name\":\"\xc3\xa9t\xc3\xa9-%02d "
                              "\xe2\x82\xac\",\"result\":\"%s\"}",
                              i ? "," : "", i, i == 5 ? "ok" : "pending");
    snprintf(doc + n, sizeof(doc) - n, "]}]}");
    curfew_previous prev;
    CHECK_EQ(read_text(doc, &prev), 0);
    CHECK_EQ(prev.pending, 39);
    size_t len = strlen(prev.blockers);
    CHECK(len < sizeof(prev.blockers));
    CHECK(len > sizeof(prev.blockers) - 12); /* cut late, not early */
    CHECK_STR(prev.blockers + len - 3, "...");
    CHECK(utf8_ok(prev.blockers));
    CHECK(strncmp(prev.blockers,
                  "\xc3\xa9t\xc3\xa9-00 \xe2\x82\xac, \xc3\xa9t\xc3\xa9-01 ",
                  22) == 0);
    CHECK(strstr(prev.blockers, "-05") == NULL); /* finished: not listed */
    /* process[64]: cut to whole characters, 31 of them. */
    CHECK_EQ(strlen(prev.process), 62);
    CHECK(utf8_ok(prev.process));
    CHECK(strncmp(prev.summary,
                  "the last shutdown did not finish: blocked in persist by "
                  "\xc3\xa9t\xc3\xa9-00",
                  62) == 0);
    CHECK_STR(prev.summary + strlen(prev.summary) - 3, "...");
    CHECK(utf8_ok(prev.summary));

    /* Exactly full: 511 bytes of names fit without "...". */
    char name[600];
    memset(name, 'x', 511);
    name[511] = '\0';
    snprintf(doc, sizeof(doc),
             HEAD "\"clean\":false,\"phases\":[{\"name\":\"persist\","
                  "\"start_ms\":3,\"end_ms\":null,\"blockers\":[{\"name\":"
                  "\"%s\",\"result\":\"pending\"}]}]}",
             name);
    CHECK_EQ(read_text(doc, &prev), 0);
    CHECK_STR(prev.blockers, name);
    /* One byte more does not fit: 508 bytes and "...". */
    name[511] = 'y';
    name[512] = '\0';
    snprintf(doc, sizeof(doc),
             HEAD "\"clean\":false,\"phases\":[{\"name\":\"persist\","
                  "\"start_ms\":3,\"end_ms\":null,\"blockers\":[{\"name\":"
                  "\"%s\",\"result\":\"pending\"}]}]}",
             name);
    CHECK_EQ(read_text(doc, &prev), 0);
    CHECK_EQ(strlen(prev.blockers), 511);
    CHECK_STR(prev.blockers + 508, "...");
}

/* ---- refusals ----------------------------------------------------------- */

TEST(prev_missing_file)
{
    curfew_previous prev;
    CHECK_EQ(curfew_record_read_previous(tmp_path("nothing-here.json"), &prev),
             -ENOENT);
    CHECK_EQ(
        curfew_record_read_previous("/nonexistent-dir/x/record.json", &prev),
        -ENOENT);
}

TEST(prev_null_arguments)
{
    curfew_previous prev;
    CHECK_EQ(curfew_record_read_previous(NULL, &prev), -EINVAL);
    CHECK_EQ(curfew_record_read_previous(tmp_path("x.json"), NULL), -EINVAL);
    CHECK_EQ(curfew_record_read_previous("", &prev), -EINVAL);
}

TEST(prev_garbage)
{
    curfew_previous prev;
    CHECK_EQ(read_text("", &prev), -EPROTO);
    CHECK_EQ(read_text("not json at all", &prev), -EPROTO);
    CHECK_EQ(read_text("\x7f"
                       "ELF\x02\x01\x01",
                       &prev),
             -EPROTO);
    CHECK_EQ(read_text("[]", &prev), -EPROTO);
    CHECK_EQ(read_text("\"curfew-record\"", &prev), -EPROTO);
    CHECK_EQ(read_text("{}", &prev), -EPROTO);
    /* st_size 0 but text inside: read whole, then refused. */
    CHECK_EQ(curfew_record_read_previous("/proc/self/status", &prev), -EPROTO);
    /* out is zeroed also on failure. */
    memset(&prev, 0x55, sizeof(prev));
    CHECK_EQ(read_text("{", &prev), -EPROTO);
    CHECK_EQ(prev.clean, 0);
    CHECK_STR(prev.summary, "");

    /* Random bytes of every length up to a few KiB. */
    char buf[4096];
    uint64_t x = 88172645463325252u;
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)(round * 20) % sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (char)x;
        }
        const char *p = tmp_path("random.bin");
        write_file(p, buf, n);
        CHECK_EQ(curfew_record_read_previous(p, &prev), -EPROTO);
    }
}

TEST(prev_wrong_type_or_version)
{
    static const char *const bad[] = {
        /* R1's hang report is not a record. */
        "{\"type\":\"curfew-hang\",\"version\":1,\"pid\":1,\"process\":\"p\","
        "\"clean\":true,\"phases\":[]}",
        "{\"version\":1,\"pid\":1,\"process\":\"p\",\"clean\":true,"
        "\"phases\":[]}",
        "{\"type\":\"curfew-record\",\"version\":2,\"pid\":1,\"process\":\"p\","
        "\"clean\":true,\"phases\":[]}",
        "{\"type\":\"curfew-record\",\"version\":\"1\",\"pid\":1,\"process\":"
        "\"p\",\"clean\":true,\"phases\":[]}",
        "{\"type\":\"curfew-record\",\"version\":1.5,\"pid\":1,\"process\":"
        "\"p\",\"clean\":true,\"phases\":[]}",
        "{\"type\":\"curfew-record\",\"pid\":1,\"process\":\"p\",\"clean\":"
        "true,\"phases\":[]}",
        /* R2's fields with the wrong types, or missing. */
        HEAD "\"clean\":1,\"phases\":[]}",
        HEAD "\"phases\":[]}",
        HEAD "\"clean\":true}",
        HEAD "\"clean\":true,\"phases\":{}}",
        HEAD "\"clean\":true,\"phases\":[1]}",
        HEAD "\"clean\":true,\"phases\":[{\"name\":\"a\",\"start_ms\":0,"
             "\"end_ms\":null}]}",
        HEAD "\"clean\":true,\"phases\":[{\"name\":7,\"start_ms\":0,"
             "\"end_ms\":null,\"blockers\":[]}]}",
        HEAD "\"clean\":true,\"phases\":[{\"name\":\"a\",\"start_ms\":\"0\","
             "\"end_ms\":null,\"blockers\":[]}]}",
        HEAD "\"clean\":true,\"phases\":[{\"name\":\"a\",\"start_ms\":0,"
             "\"end_ms\":null,\"blockers\":[{\"name\":\"b\"}]}]}",
        HEAD "\"clean\":true,\"phases\":[{\"name\":\"a\",\"start_ms\":0,"
             "\"end_ms\":null,\"blockers\":[{\"result\":\"ok\"}]}]}",
        "{\"type\":\"curfew-record\",\"version\":1,\"process\":\"p\","
        "\"clean\":true,\"phases\":[]}",
        "{\"type\":\"curfew-record\",\"version\":1,\"pid\":1,\"process\":3,"
        "\"clean\":true,\"phases\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        curfew_previous prev;
        int r = read_text(bad[i], &prev);
        if (r != -EPROTO)
            th_fail(__FILE__, __LINE__, "case %zu: %d, expected -EPROTO", i, r);
    }
    /* And the same skeleton, right, is accepted. */
    curfew_previous prev;
    CHECK_EQ(read_text(HEAD "\"clean\":true,\"elapsed_ms\":12,\"phases\":[]}",
                       &prev),
             0);
    CHECK_STR(prev.summary, "the last shutdown completed cleanly in 12 ms");
}

TEST(prev_not_a_regular_file)
{
    curfew_previous prev;
    const char *dir = tmp_path("a-directory");
    CHECK_EQ(mkdir(dir, 0755), 0);
    CHECK_EQ(curfew_record_read_previous(dir, &prev), -EISDIR);
    /* A FIFO must not block the reader until a writer comes. */
    const char *fifo = tmp_path("a-fifo");
    CHECK_EQ(mkfifo(fifo, 0644), 0);
    CHECK_EQ(curfew_record_read_previous(fifo, &prev), -EPROTO);
}

TEST(prev_too_large)
{
    /* A sparse file just over the 64 MiB bound: refused from its size,
     * without reading it. */
    const char *p = tmp_path("huge.json");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_EQ(ftruncate(fd, ((off_t)64 << 20) + 1), 0);
    close(fd);
    curfew_previous prev;
    int64_t t0 = th_now_ms();
    CHECK_EQ(curfew_record_read_previous(p, &prev), -EPROTO);
    CHECK(th_now_ms() - t0 < 1000);
}

TEST(prev_unreadable)
{
    const char *p = tmp_path("secret.json");
    write_file(p, "{}", 2);
    CHECK_EQ(chmod(p, 0), 0);
    curfew_previous prev;
    int r = curfew_record_read_previous(p, &prev);
    if (geteuid() == 0)
        CHECK_EQ(r, -EPROTO); /* root reads it anyway: "{}" is no record */
    else
        CHECK_EQ(r, -EACCES);
}

/* Every allocation on the way may fail: -ENOMEM, no leak, and once none
 * fails the result is the one the library gives. */
TEST(prev_enomem)
{
    const char *rec = tmp_path("nomem.json");
    int st = run_child("prev_hang", rec, "plain");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    curfew_previous want, got;
    CHECK_EQ(curfew_record_read_previous(rec, &want), 0);
    long k;
    for (k = 0;; k++) {
        fi_count = 0;
        fi_fail_at = k;
        fi_live = 0;
        int r = fi_read_previous(rec, &got);
        if (r == 0)
            break;
        if (r != -ENOMEM)
            th_fail(__FILE__, __LINE__, "allocation %ld: %d", k, r);
        if (fi_live != 0)
            th_fail(__FILE__, __LINE__, "allocation %ld: %ld leaked", k,
                    fi_live);
        CHECK(k < 100000);
    }
    fi_fail_at = -1;
    CHECK(k > 10);
    CHECK_EQ(fi_live, 0);
    CHECK(memcmp(&want, &got, sizeof(want)) == 0);
    /* A file whose size says 0 (as /proc's do) makes the buffer grow while
     * reading: those allocations may fail too. */
    for (k = 0;; k++) {
        fi_count = 0;
        fi_fail_at = k;
        fi_live = 0;
        int r = fi_read_previous("/proc/self/status", &got);
        CHECK_EQ(fi_live, 0);
        if (r == -EPROTO)
            break;
        CHECK_EQ(r, -ENOMEM);
        CHECK(k < 1000);
    }
    fi_fail_at = -1;
    CHECK(k >= 3); /* the first buffer and at least two growths */
    /* The renamed helpers are the same code as the library's. */
    CHECK(fi_json_get(NULL, "x") == NULL && fi_json_str(NULL) == NULL &&
          fi_json_int(NULL, 4) == 4);
    fi_json_free(NULL);
}
