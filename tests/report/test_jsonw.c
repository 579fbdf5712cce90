/* Tests for the JSON writer (src/report/jsonw.c): every string is escaped
 * correctly whatever bytes a user passed (CONTRACT.md R4), and the writer
 * works without malloc or stdio, through a fixed buffer and a descriptor
 * (W4). Output is checked with a real parser (python3's json module, strict
 * UTF-8) and with curfew's own reader (curfew__json_parse).
 *
 * Invalid UTF-8 is replaced byte by byte: each byte that does not start a
 * well-formed sequence becomes one U+FFFD (written as \ufffd).
 *
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

#include "report/jsonr.h"
#include "report/jsonw.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ---- helpers ------------------------------------------------------------ */

static const char fffd[] = "\xEF\xBF\xBD";

/* A temporary file holding len bytes of text; returns its path (static). */
static const char *temp_file(const char *text, size_t len)
{
    static char path[4096];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/curfew-jw.XXXXXX",
             dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        CHECK(n > 0);
        off += (size_t)n;
    }
    CHECK(close(fd) == 0);
    return path;
}

static void hex(const char *s, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[(unsigned char)s[i] >> 4];
        out[2 * i + 1] = digits[(unsigned char)s[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Python's json module must accept the file (read as strict UTF-8: a byte
 * that is not UTF-8 fails). With want (nwant strings, as hex of their UTF-8
 * bytes) the document must be an array of exactly those strings. */
static const char py_check[] =
    "import json, sys\n"
    "with open(sys.argv[1], encoding='utf-8', errors='strict') as f:\n"
    "    d = json.load(f)\n"
    "w = sys.argv[2:]\n"
    "if w:\n"
    "    got = [x.encode('utf-8').hex() for x in d]\n"
    "    if got != w:\n"
    "        print('python3 decoded', got, file=sys.stderr)\n"
    "        sys.exit(3)\n";

static void python_parses_file(const char *path, char **want, int nwant)
{
    char *argv[4 + 256];
    int n = 0;
    CHECK(nwant <= 256);
    argv[n++] = "python3";
    argv[n++] = "-c";
    argv[n++] = (char *)py_check;
    argv[n++] = (char *)path;
    for (int i = 0; i < nwant; i++)
        argv[n++] = want[i];
    argv[n] = NULL;
    pid_t pid;
    int r = posix_spawnp(&pid, "python3", NULL, NULL, argv, environ);
    if (r != 0)
        th_fail(__FILE__, __LINE__, "cannot run python3: %s", strerror(r));
    int st;
    while (waitpid(pid, &st, 0) < 0)
        CHECK(errno == EINTR);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        th_fail(__FILE__, __LINE__,
                "python3's json module refused %s (status %#x)", path, st);
}

static void python_parses(const char *text, size_t len)
{
    const char *path = temp_file(text, len);
    python_parses_file(path, NULL, 0);
    unlink(path);
}

/* The document is an array of n strings, which python3 must decode to the
 * n byte strings want[i] (want_len[i] bytes). */
static void python_decodes(const char *text, size_t len, const char **want,
                           const size_t *want_len, int n)
{
    char *hx[256];
    CHECK(n <= 256);
    for (int i = 0; i < n; i++) {
        hx[i] = malloc(2 * want_len[i] + 1);
        CHECK(hx[i] != NULL);
        hex(want[i], want_len[i], hx[i]);
    }
    const char *path = temp_file(text, len);
    python_parses_file(path, hx, n);
    unlink(path);
    for (int i = 0; i < n; i++)
        free(hx[i]);
}

static curfew__jval *jparse(const char *text, size_t len)
{
    curfew__jval *v = NULL;
    char err[256] = "";
    int r = curfew__json_parse(text, len, &v, err, sizeof(err));
    if (r != 0)
        th_fail(__FILE__, __LINE__, "curfew__json_parse: %d (%s) on: %.*s", r,
                err, (int)len, text);
    CHECK(v != NULL);
    return v;
}

/* Decoded string v equals the len bytes at want. */
static void check_jstr(const curfew__jval *v, const char *want, size_t len)
{
    CHECK(v != NULL);
    CHECK_EQ(v->type, CURFEW__J_STR);
    if (v->len != len || memcmp(v->str, want, len) != 0) {
        char a[512], b[512];
        hex(v->str, v->len < 255 ? v->len : 255, a);
        hex(want, len < 255 ? len : 255, b);
        th_fail(__FILE__, __LINE__, "decoded %s, want %s", a, b);
    }
}

/* Every byte of the output is printable ASCII or part of well-formed
 * UTF-8: no raw control byte, no DEL, nothing invalid. */
static void check_clean_output(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7F)
                th_fail(__FILE__, __LINE__, "raw byte %#x at %zu", c, i);
            i++;
            continue;
        }
        size_t l = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        CHECK(c >= 0xC2 && c <= 0xF4 && i + l <= len);
        for (size_t k = 1; k < l; k++)
            CHECK((s[i + k] & 0xC0) == 0x80);
        if (c == 0xE0)
            CHECK(s[i + 1] >= 0xA0);
        if (c == 0xED)
            CHECK(s[i + 1] <= 0x9F);
        if (c == 0xF0)
            CHECK(s[i + 1] >= 0x90);
        if (c == 0xF4)
            CHECK(s[i + 1] <= 0x8F);
        i += l;
    }
}

/* Writes each of n byte strings as an element of one array into buf (fd -1)
 * and checks the output with both parsers: the decoded strings must be
 * want[i] (want_len[i] bytes). Returns the output length. */
static size_t array_roundtrip(char *buf, size_t cap, const char **in,
                              const size_t *in_len, const char **want,
                              const size_t *want_len, int n)
{
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, cap);
    curfew__jw_arr(&w);
    for (int i = 0; i < n; i++)
        curfew__jw_strn(&w, in[i], in_len[i]);
    curfew__jw_arr_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK_EQ(strlen(buf), w.len);
    check_clean_output(buf, w.len);

    curfew__jval *v = jparse(buf, w.len);
    CHECK_EQ(v->type, CURFEW__J_ARR);
    CHECK_EQ(v->n, n);
    for (int i = 0; i < n; i++)
        check_jstr(&v->items[i], want[i], want_len[i]);
    curfew__json_free(v);

    python_decodes(buf, w.len, want, want_len, n);
    return w.len;
}

/* ---- escaping (R4) -------------------------------------------------------
 */

/* R4: quotes, backslashes, newlines and tabs in names and statuses. */
TEST(jw_escapes_quotes_backslashes)
{
    char buf[512];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    curfew__jw_obj(&w);
    curfew__jw_kstr(&w, "name", "say \"hi\"");
    curfew__jw_kstr(&w, "status", "C:\\dir\\file");
    curfew__jw_kstr(&w, "multi", "line 1\nline 2\r\n\tindented");
    curfew__jw_kstr(&w, "\"quoted\\key\"\n", "\\\"");
    curfew__jw_obj_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK_STR(buf, "{\"name\":\"say \\\"hi\\\"\","
                   "\"status\":\"C:\\\\dir\\\\file\","
                   "\"multi\":\"line 1\\nline 2\\r\\n\\tindented\","
                   "\"\\\"quoted\\\\key\\\"\\n\":\"\\\\\\\"\"}");
    python_parses(buf, w.len);

    curfew__jval *v = jparse(buf, w.len);
    CHECK_STR(curfew__json_str(curfew__json_get(v, "name")), "say \"hi\"");
    CHECK_STR(curfew__json_str(curfew__json_get(v, "status")), "C:\\dir\\file");
    CHECK_STR(curfew__json_str(curfew__json_get(v, "multi")),
              "line 1\nline 2\r\n\tindented");
    CHECK_STR(curfew__json_str(curfew__json_get(v, "\"quoted\\key\"\n")),
              "\\\"");
    curfew__json_free(v);
}

/* R4: every control byte 0x00-0x1f and 0x7f, alone, between letters and all
 * in one string, comes back as it was and never appears raw. */
TEST(jw_control_bytes)
{
    const char *in[3 * 33 + 1], *want[3 * 33 + 1];
    size_t len[3 * 33 + 1];
    char alone[33][1], mid[33][3], all[33];
    int n = 0;
    for (int i = 0; i < 33; i++) {
        char c = (char)(i < 32 ? i : 0x7F);
        alone[i][0] = c;
        mid[i][0] = 'a';
        mid[i][1] = c;
        mid[i][2] = 'b';
        all[i] = c;
        in[n] = alone[i];
        len[n++] = 1;
        in[n] = mid[i];
        len[n++] = 3;
    }
    in[n] = all;
    len[n++] = sizeof(all);
    for (int i = 0; i < n; i++)
        want[i] = in[i];
    static char buf[8192];
    array_roundtrip(buf, sizeof(buf), in, len, want, len, n);

    /* The same as object keys and values, as names and statuses are. */
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    curfew__jw_obj(&w);
    for (int i = 1; i < 33; i++) {
        char key[3] = {'k', (char)(i < 32 ? i : 0x7F), '\0'};
        curfew__jw_key(&w, key);
        curfew__jw_strn(&w, mid[i], 3);
    }
    curfew__jw_obj_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    check_clean_output(buf, w.len);
    python_parses(buf, w.len);
    curfew__jval *v = jparse(buf, w.len);
    CHECK_EQ(v->n, 32);
    for (int i = 1; i < 33; i++) {
        char key[3] = {'k', (char)(i < 32 ? i : 0x7F), '\0'};
        CHECK_STR(v->keys[i - 1], key);
        check_jstr(curfew__json_get(v, key), mid[i], 3);
    }
    curfew__json_free(v);
}

struct bad_case {
    const char *what;
    const char *in;  /* between "a" and "z" */
    const char *out; /* what a parser must decode, "a" and "z" around */
};

/* R4: invalid UTF-8 becomes U+FFFD, one per byte that does not start a
 * well-formed sequence; what is around it is kept. */
TEST(jw_invalid_utf8)
{
#define R "\xEF\xBF\xBD"
    static const struct bad_case cases[] = {
        {"lone continuation 80", "\x80", R},
        {"lone continuation bf", "\xBF", R},
        {"three continuations", "\x80\x81\xBF", R R R},
        {"2-byte lead at end", "\xC3", R},
        {"2-byte lead then ASCII", "\xC3(", R "("},
        {"3-byte truncated after 1", "\xE2", R},
        {"3-byte truncated after 2", "\xE2\x82", R R},
        {"3-byte truncated, then ASCII", "\xE2\x82(", R R "("},
        {"4-byte truncated after 3", "\xF0\x9F\x98", R R R},
        {"4-byte lead then 2-byte char", "\xF0\xC3\xA9", R "\xC3\xA9"},
        {"overlong NUL c0 80", "\xC0\x80", R R},
        {"overlong '/' c0 af", "\xC0\xAF", R R},
        {"overlong c1 bf", "\xC1\xBF", R R},
        {"overlong 3-byte NUL", "\xE0\x80\x80", R R R},
        {"overlong 3-byte U+07FF", "\xE0\x9F\xBF", R R R},
        {"overlong 4-byte NUL", "\xF0\x80\x80\x80", R R R R},
        {"overlong 4-byte U+FFFF", "\xF0\x8F\xBF\xBF", R R R R},
        {"surrogate U+D800", "\xED\xA0\x80", R R R},
        {"surrogate U+DBFF", "\xED\xAF\xBF", R R R},
        {"surrogate U+DC00", "\xED\xB0\x80", R R R},
        {"surrogate U+DFFF", "\xED\xBF\xBF", R R R},
        {"surrogate pair in CESU-8", "\xED\xA0\xBD\xED\xB8\x80", R R R R R R},
        {"U+110000", "\xF4\x90\x80\x80", R R R R},
        {"f5 lead", "\xF5\x80\x80\x80", R R R R},
        {"f7 bf bf bf", "\xF7\xBF\xBF\xBF", R R R R},
        {"5-byte form", "\xF8\x88\x80\x80\x80", R R R R R},
        {"6-byte form", "\xFC\x84\x80\x80\x80\x80", R R R R R R},
        {"fe", "\xFE", R},
        {"ff", "\xFF", R},
        {"fe ff (UTF-16 BOM bytes)", "\xFE\xFF", R R},
        {"bad byte then valid 4-byte", "\xFF\xF0\x9F\x98\x80",
         R "\xF0\x9F\x98\x80"},
        {"latin-1 text", "caf\xE9 na\xEFve", "caf" R " na" R "ve"},
    };
#undef R
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    const char *in[N], *want[N];
    size_t in_len[N], want_len[N];
    char ibuf[N][64], obuf[N][64];
    for (int i = 0; i < N; i++) {
        snprintf(ibuf[i], sizeof(ibuf[i]), "a%sz", cases[i].in);
        snprintf(obuf[i], sizeof(obuf[i]), "a%sz", cases[i].out);
        in[i] = ibuf[i];
        in_len[i] = strlen(ibuf[i]);
        want[i] = obuf[i];
        want_len[i] = strlen(obuf[i]);
    }
    static char buf[8192];
    array_roundtrip(buf, sizeof(buf), in, in_len, want, want_len, N);
    CHECK(strstr(buf, "\"a\\ufffdz\"") != NULL);

    /* One at a time, so a failure names its case. */
    for (int i = 0; i < N; i++) {
        char one[256];
        curfew__jw w;
        curfew__jw_init(&w, -1, one, sizeof(one));
        curfew__jw_strn(&w, in[i], in_len[i]);
        CHECK_EQ(curfew__jw_finish(&w), 0);
        curfew__jval *v = jparse(one, w.len);
        if (v->type != CURFEW__J_STR || v->len != want_len[i] ||
            memcmp(v->str, want[i], want_len[i]) != 0)
            th_fail(__FILE__, __LINE__, "%s: written as %s", cases[i].what,
                    one);
        /* Each replacement is written as the escape \ufffd (no input here
         * holds a real U+FFFD). */
        int esc = 0, rep = 0;
        for (const char *p = one; (p = strstr(p, "\\ufffd")); p++)
            esc++;
        for (const char *p = want[i]; (p = strstr(p, fffd)); p++)
            rep++;
        if (esc != rep)
            th_fail(__FILE__, __LINE__, "%s: %d escapes for %d replacements",
                    cases[i].what, esc, rep);
        curfew__json_free(v);
    }
}

/* R4: well-formed multi-byte characters are written as they are, not
 * escaped, at every boundary of the encoding. */
TEST(jw_valid_multibyte_kept)
{
    static const char *const chars[] = {
        "\xC2\x80",         /* U+0080, smallest 2-byte */
        "\xC3\xA9",         /* é */
        "\xDF\xBF",         /* U+07FF, largest 2-byte */
        "\xE0\xA0\x80",     /* U+0800, smallest 3-byte */
        "\xE2\x82\xAC",     /* € */
        "\xE2\x80\xA8",     /* U+2028 LINE SEPARATOR */
        "\xED\x9F\xBF",     /* U+D7FF, just below the surrogates */
        "\xEE\x80\x80",     /* U+E000, just above them */
        "\xEF\xBB\xBF",     /* U+FEFF (BOM) inside a string */
        "\xEF\xBF\xBD",     /* U+FFFD itself */
        "\xEF\xBF\xBF",     /* U+FFFF, largest 3-byte */
        "\xF0\x90\x80\x80", /* U+10000, smallest 4-byte */
        "\xF0\x9F\x98\x80", /* 😀 */
        "\xF4\x8F\xBF\xBF", /* U+10FFFF, the largest code point */
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",             /* 日本語 */
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", /* Привет */
    };
    enum { N = sizeof(chars) / sizeof(chars[0]) };
    const char *in[N];
    size_t len[N];
    for (int i = 0; i < N; i++) {
        in[i] = chars[i];
        len[i] = strlen(chars[i]);
    }
    static char buf[4096];
    array_roundtrip(buf, sizeof(buf), in, len, in, len, N);

    /* Byte for byte in the output: quote, the bytes, quote. */
    for (int i = 0; i < N; i++) {
        char one[64], want[64];
        curfew__jw w;
        curfew__jw_init(&w, -1, one, sizeof(one));
        curfew__jw_str(&w, chars[i]);
        CHECK_EQ(curfew__jw_finish(&w), 0);
        snprintf(want, sizeof(want), "\"%s\"", chars[i]);
        CHECK_STR(one, want);
    }
}

/* R4: names and statuses as a report holds them, with every kind of byte
 * mixed, as keys and values; both parsers agree on what they read. */
TEST(jw_names_statuses_mixed)
{
    static const char name[] = "db \"main\"\\pool\n\t\x01\x7F\xC3\xA9\xFF\x80"
                               "\xED\xA0\x80\xF0\x9F\x98\x80";
    static const char name_dec[] = "db \"main\"\\pool\n\t\x01\x7F\xC3\xA9"
                                   "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                                   "\xEF\xBF\xBD\xEF\xBF\xBD\xF0\x9F\x98\x80";
    static const char status[] = "waiting for \"flush\" (50%)\r\n\x1B[31m"
                                 "\xC0\xAF\x00hidden";
    static const char status_dec[] = "waiting for \"flush\" (50%)\r\n\x1B[31m"
                                     "\xEF\xBF\xBD\xEF\xBF\xBD\x00hidden";
    char buf[1024];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    curfew__jw_obj(&w);
    curfew__jw_key(&w, "conditions");
    curfew__jw_arr(&w);
    curfew__jw_obj(&w);
    curfew__jw_kstr(&w, "name", name);
    curfew__jw_key(&w, "status");
    curfew__jw_strn(&w, status, sizeof(status) - 1);
    curfew__jw_kstr(&w, "file", "src/db.c");
    curfew__jw_kint(&w, "line", 42);
    curfew__jw_obj_end(&w);
    curfew__jw_arr_end(&w);
    curfew__jw_key(&w, name); /* a user string as a key */
    curfew__jw_int(&w, -1);
    curfew__jw_obj_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    check_clean_output(buf, w.len);
    python_parses(buf, w.len);

    curfew__jval *v = jparse(buf, w.len);
    const curfew__jval *c = curfew__json_get(v, "conditions");
    CHECK(c && c->type == CURFEW__J_ARR && c->n == 1);
    check_jstr(curfew__json_get(&c->items[0], "name"), name_dec,
               sizeof(name_dec) - 1);
    check_jstr(curfew__json_get(&c->items[0], "status"), status_dec,
               sizeof(status_dec) - 1);
    CHECK_EQ(curfew__json_int(curfew__json_get(&c->items[0], "line"), 0), 42);
    CHECK_EQ(v->n, 2);
    CHECK_STR(v->keys[1], name_dec);
    CHECK_EQ(curfew__json_int(&v->items[1], 0), -1);
    curfew__json_free(v);
}

/* R4: all 256 single bytes and all 65 536 byte pairs, each checked against
 * the byte-by-byte replacement rule. */
TEST(jw_every_byte_pair)
{
    size_t cap = 65536 * 32 + 4096;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, cap);
    curfew__jw_arr(&w);
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        curfew__jw_strn(&w, &c, 1);
    }
    for (int i = 0; i < 65536; i++) {
        char p[2] = {(char)(i >> 8), (char)(i & 255)};
        curfew__jw_strn(&w, p, 2);
    }
    curfew__jw_arr_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    check_clean_output(buf, w.len);
    python_parses(buf, w.len);

    curfew__jval *v = jparse(buf, w.len);
    CHECK_EQ(v->n, 256 + 65536);
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        if (i < 0x80)
            check_jstr(&v->items[i], &c, 1);
        else
            check_jstr(&v->items[i], fffd, 3);
    }
    for (int i = 0; i < 65536; i++) {
        unsigned a = (unsigned)i >> 8, b = (unsigned)i & 255;
        char p[2] = {(char)a, (char)b}, want[6];
        size_t n = 0;
        if (a >= 0xC2 && a <= 0xDF && (b & 0xC0) == 0x80) {
            memcpy(want, p, 2);
            n = 2;
        } else {
            for (int k = 0; k < 2; k++) {
                if ((unsigned char)p[k] < 0x80) {
                    want[n++] = p[k];
                } else {
                    memcpy(want + n, fffd, 3);
                    n += 3;
                }
            }
        }
        check_jstr(&v->items[256 + i], want, n);
    }
    curfew__json_free(v);
    free(buf);
}

/* ---- structure ---------------------------------------------------------- */

/* Commas between array elements and object members, none after a key or
 * before the first element; documents one after another with raw text. */
TEST(jw_nesting_separators)
{
    char buf[512];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    curfew__jw_obj(&w);
    curfew__jw_key(&w, "a");
    curfew__jw_arr(&w);
    curfew__jw_int(&w, 1);
    curfew__jw_int(&w, 2);
    curfew__jw_obj(&w);
    curfew__jw_key(&w, "b");
    curfew__jw_arr(&w);
    curfew__jw_arr_end(&w);
    curfew__jw_kstr(&w, "c", NULL);
    curfew__jw_obj_end(&w);
    curfew__jw_arr(&w);
    curfew__jw_arr_end(&w);
    curfew__jw_str(&w, "x");
    curfew__jw_null(&w);
    curfew__jw_bool(&w, 1);
    curfew__jw_bool(&w, 0);
    curfew__jw_str(&w, NULL);
    curfew__jw_arr(&w);
    curfew__jw_arr(&w);
    curfew__jw_int(&w, 3);
    curfew__jw_arr_end(&w);
    curfew__jw_arr_end(&w);
    curfew__jw_arr_end(&w);
    curfew__jw_key(&w, "e");
    curfew__jw_obj(&w);
    curfew__jw_obj_end(&w);
    curfew__jw_kint(&w, "f", -5);
    curfew__jw_key(&w, "g");
    curfew__jw_bool(&w, 1);
    curfew__jw_obj_end(&w);
    curfew__jw_raw(&w, "\n", 1);
    curfew__jw_arr(&w); /* a second document: no comma before it */
    curfew__jw_arr_end(&w);
    curfew__jw_raw(&w, "\n", 1);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK_STR(buf, "{\"a\":[1,2,{\"b\":[],\"c\":null},[],\"x\",null,true,false,"
                   "null,[[3]]],\"e\":{},\"f\":-5,\"g\":true}\n[]\n");
    CHECK_EQ(w.len, strlen(buf));
    CHECK_EQ(w.total, w.len);

    size_t first = (size_t)(strchr(buf, '\n') - buf);
    python_parses(buf, first);
    curfew__jval *v = jparse(buf, first);
    CHECK_EQ(v->type, CURFEW__J_OBJ);
    CHECK_EQ(v->n, 4);
    const curfew__jval *a = curfew__json_get(v, "a");
    CHECK(a && a->type == CURFEW__J_ARR && a->n == 10);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "f"), 0), -5);
    curfew__json_free(v);
    v = jparse(buf + first + 1, w.len - first - 1);
    CHECK(v->type == CURFEW__J_ARR && v->n == 0);
    curfew__json_free(v);
}

/* Up to CURFEW__JW_MAXDEPTH containers nest; more are refused with -E2BIG
 * (and nothing is written out of bounds). */
TEST(jw_nesting_limit)
{
    char buf[512];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    /* {"k":[0,{"k":[2,...[30]...]}]}: objects and arrays alternating. */
    for (int i = 0; i < CURFEW__JW_MAXDEPTH; i++) {
        if (i % 2 == 0) {
            curfew__jw_obj(&w);
            curfew__jw_key(&w, "k");
        } else {
            curfew__jw_arr(&w);
            curfew__jw_int(&w, i);
        }
    }
    for (int i = CURFEW__JW_MAXDEPTH - 1; i >= 0; i--) {
        if (i % 2 == 0)
            curfew__jw_obj_end(&w);
        else
            curfew__jw_arr_end(&w);
    }
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK_EQ(w.depth, 0);
    python_parses(buf, w.len);
    curfew__jval *v = jparse(buf, w.len);
    const curfew__jval *p = v;
    for (int i = 0; i < CURFEW__JW_MAXDEPTH; i++) {
        if (i % 2 == 0) {
            CHECK(p->type == CURFEW__J_OBJ && p->n == 1);
            p = curfew__json_get(p, "k");
        } else {
            CHECK(p->type == CURFEW__J_ARR);
            CHECK_EQ(p->n, i + 1 < CURFEW__JW_MAXDEPTH ? 2 : 1);
            CHECK_EQ(curfew__json_int(&p->items[0], -1), i);
            p = p->n == 2 ? &p->items[1] : NULL;
        }
    }
    CHECK(p == NULL);
    curfew__json_free(v);

    curfew__jw_init(&w, -1, buf, sizeof(buf));
    for (int i = 0; i < CURFEW__JW_MAXDEPTH + 5; i++)
        curfew__jw_arr(&w);
    for (int i = 0; i < CURFEW__JW_MAXDEPTH + 5; i++)
        curfew__jw_arr_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), -E2BIG);
    CHECK(w.len < sizeof(buf));
}

/* ---- buffers and descriptors (W4) --------------------------------------- */

static void sample_doc(curfew__jw *w, int items)
{
    curfew__jw_obj(w);
    curfew__jw_kstr(w, "type", "curfew-hang");
    curfew__jw_kint(w, "version", 1);
    curfew__jw_key(w, "conditions");
    curfew__jw_arr(w);
    for (int i = 0; i < items; i++) {
        char name[64];
        snprintf(name, sizeof(name), "blocker \"%d\"\n\t\\ \xC3\xA9\xFF", i);
        curfew__jw_obj(w);
        curfew__jw_kstr(w, "name", name);
        curfew__jw_kint(w, "age_ms", (int64_t)i * 1000003);
        curfew__jw_obj_end(w);
    }
    curfew__jw_arr_end(w);
    curfew__jw_obj_end(w);
}

/* W4: a buffer too small for the output: -ENOSPC, a NUL-terminated prefix
 * of the full output, and not one byte written past the buffer, for every
 * size from 1 to one more than needed; a zero-sized buffer is -EINVAL. */
TEST(jw_small_buffer_truncates)
{
    char full[4096];
    curfew__jw w;
    curfew__jw_init(&w, -1, full, sizeof(full));
    sample_doc(&w, 3);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    size_t len = w.len;
    CHECK(len > 100);

    for (size_t cap = 1; cap <= len + 1; cap++) {
        /* Exactly cap bytes on the heap (ASan sees an overflow), then the
         * same in a larger array with a guard pattern after it. */
        char *exact = malloc(cap);
        CHECK(exact != NULL);
        curfew__jw_init(&w, -1, exact, cap);
        sample_doc(&w, 3);
        int r = curfew__jw_finish(&w);
        CHECK_EQ(r, cap <= len ? -ENOSPC : 0);
        CHECK(w.len < cap);
        CHECK_EQ(exact[w.len], '\0');
        CHECK(memcmp(exact, full, w.len) == 0);
        free(exact);

        char guarded[4096 + 64];
        memset(guarded, 0xA5, sizeof(guarded));
        curfew__jw_init(&w, -1, guarded, cap);
        sample_doc(&w, 3);
        CHECK_EQ(curfew__jw_finish(&w), cap <= len ? -ENOSPC : 0);
        for (size_t i = cap; i < cap + 64; i++)
            CHECK_EQ((unsigned char)guarded[i], 0xA5);
    }

    char one = 'x';
    curfew__jw_init(&w, -1, &one, 0);
    sample_doc(&w, 3);
    CHECK_EQ(curfew__jw_finish(&w), -EINVAL);
    CHECK_EQ(one, 'x');
}

/* W4: through a file with a 16-byte staging buffer the output flushes
 * hundreds of times and is the same as the buffer path's. */
TEST(jw_fd_file_flushes)
{
    static char full[1 << 16];
    curfew__jw w;
    curfew__jw_init(&w, -1, full, sizeof(full));
    sample_doc(&w, 400);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    size_t len = w.len;
    CHECK(len > 16 * 100);

    const char *path = temp_file("", 0);
    int fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    char small[16];
    curfew__jw_init(&w, fd, small, sizeof(small));
    sample_doc(&w, 400);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK_EQ(w.total, len);
    CHECK(close(fd) == 0);

    python_parses_file(path, NULL, 0);
    static char back[sizeof(full)];
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, back + got, sizeof(back) - got)) > 0)
        got += (size_t)n;
    CHECK(n == 0);
    close(fd);
    unlink(path);
    CHECK_EQ(got, len);
    CHECK(memcmp(back, full, len) == 0);
}

struct drain {
    int fd;
    char *buf;
    size_t cap, len;
};

static void *drain_pipe(void *arg)
{
    struct drain *d = arg;
    ssize_t n;
    while ((n = read(d->fd, d->buf + d->len, d->cap - d->len)) > 0)
        d->len += (size_t)n;
    return NULL;
}

/* W4: through a pipe (read by another thread) with a buffer of 7 bytes:
 * the reader gets exactly the buffer path's bytes. */
TEST(jw_fd_pipe_flushes)
{
    static char full[1 << 17];
    curfew__jw w;
    curfew__jw_init(&w, -1, full, sizeof(full));
    sample_doc(&w, 1500); /* larger than a pipe holds */
    CHECK_EQ(curfew__jw_finish(&w), 0);
    size_t len = w.len;
    CHECK(len > 70000);

    int p[2];
    CHECK(pipe(p) == 0);
    static char got[sizeof(full)];
    struct drain d = {.fd = p[0], .buf = got, .cap = sizeof(got)};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, drain_pipe, &d) == 0);
    char small[7];
    curfew__jw_init(&w, p[1], small, sizeof(small));
    sample_doc(&w, 1500);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK(close(p[1]) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    close(p[0]);
    CHECK_EQ(d.len, len);
    CHECK(memcmp(got, full, len) == 0);
    curfew__jval *v = jparse(got, d.len);
    CHECK_EQ(curfew__json_get(v, "conditions")->n, 1500);
    curfew__json_free(v);
}

/* W4: a failing descriptor gives its error from finish, once, and the
 * writer stops writing. */
TEST(jw_fd_errors)
{
    char small[8];
    curfew__jw w;
    int fd = open("/dev/null", O_RDONLY);
    CHECK(fd >= 0);
    curfew__jw_init(&w, fd, small, sizeof(small));
    sample_doc(&w, 10);
    CHECK_EQ(curfew__jw_finish(&w), -EBADF);
    CHECK_EQ(curfew__jw_finish(&w), -EBADF);
    close(fd);

    /* A pipe nobody reads any more: EPIPE (SIGPIPE ignored here). */
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    CHECK(pipe(p) == 0);
    close(p[0]);
    curfew__jw_init(&w, p[1], small, sizeof(small));
    sample_doc(&w, 10);
    CHECK_EQ(curfew__jw_finish(&w), -EPIPE);
    close(p[1]);
}

/* ---- integers ----------------------------------------------------------- */

/* curfew__fmt_int in exactly 21 bytes, at every edge of int64_t. */
TEST(jw_fmt_int)
{
    static const struct {
        int64_t v;
        const char *s;
    } cases[] = {
        {0, "0"},
        {1, "1"},
        {-1, "-1"},
        {9, "9"},
        {10, "10"},
        {-10, "-10"},
        {99, "99"},
        {100, "100"},
        {1234567890, "1234567890"},
        {-1234567890, "-1234567890"},
        {INT32_MAX, "2147483647"},
        {INT32_MIN, "-2147483648"},
        {(int64_t)UINT32_MAX + 1, "4294967296"},
        {1000000000000000000, "1000000000000000000"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MAX - 1, "9223372036854775806"},
        {INT64_MIN, "-9223372036854775808"},
        {INT64_MIN + 1, "-9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = malloc(21); /* the documented minimum */
        CHECK(out != NULL);
        size_t n = curfew__fmt_int(out, cases[i].v);
        CHECK_STR(out, cases[i].s);
        CHECK_EQ(n, strlen(cases[i].s));
        free(out);
    }
}

/* Integers in documents: both parsers read back the same values. */
TEST(jw_int_values)
{
    static const int64_t vals[] = {
        0,         -1,        1,
        INT64_MIN, INT64_MAX, INT64_MIN + 1,
        -1000,     INT32_MIN, (int64_t)INT32_MAX + 1};
    enum { N = sizeof(vals) / sizeof(vals[0]) };
    char buf[512];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    curfew__jw_arr(&w);
    for (int i = 0; i < N; i++)
        curfew__jw_int(&w, vals[i]);
    curfew__jw_arr_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    CHECK_STR(buf, "[0,-1,1,-9223372036854775808,9223372036854775807,"
                   "-9223372036854775807,-1000,-2147483648,2147483648]");
    python_parses(buf, w.len);
    curfew__jval *v = jparse(buf, w.len);
    CHECK_EQ(v->n, N);
    for (int i = 0; i < N; i++) {
        CHECK(v->items[i].type == CURFEW__J_NUM && v->items[i].is_int);
        CHECK(v->items[i].i == vals[i]);
        CHECK(curfew__json_int(&v->items[i], 7) == vals[i]);
    }
    curfew__json_free(v);
}
