/* Tests for the strict JSON reader (src/report/jsonr.c), which reads back
 * the shutdown record (R2) and feeds curfew-report (R3); and for R4 through
 * a round trip with the writer.
 *
 * SPDX-License-Identifier: MIT
 */
#include "harness.h"

#include "report/jsonr.h"
#include "report/jsonw.h"

#include <errno.h>
#include <math.h>

/* ---- a second copy of the reader with failing allocations ---------------
 *
 * jsonr.c is compiled once more into this test with malloc, realloc and
 * free redirected to counters that can fail the n-th allocation, and with
 * its entry points renamed (and made static) so that they do not clash with
 * the library's. This reaches every -ENOMEM path without touching the
 * process-wide allocator.
 */
static long fi_fail_at = -1; /* allocation number to fail; -1: none */
static long fi_count;        /* allocations attempted */
static long fi_live;         /* blocks allocated and not freed */

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

#define malloc fi_malloc
#define realloc fi_realloc
#define free fi_free
#define curfew__json_parse fi_json_parse
#define curfew__json_free fi_json_free
#define curfew__json_get fi_json_get
#define curfew__json_str fi_json_str
#define curfew__json_int fi_json_int
#include "report/jsonr.c"
#undef malloc
#undef realloc
#undef free
#undef curfew__json_parse
#undef curfew__json_free
#undef curfew__json_get
#undef curfew__json_str
#undef curfew__json_int

/* ---- helpers ------------------------------------------------------------ */

/* Parses len bytes from an exact-size heap copy, so that reading one byte
 * too far is caught by ASan. Fails the test unless the parse succeeds. */
static curfew__jval *parse_ok_n(int line, const char *text, size_t len)
{
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, text, len);
    char err[256] = "untouched";
    curfew__jval *v = NULL;
    int r = curfew__json_parse(copy, len, &v, err, sizeof(err));
    free(copy);
    if (r != 0 || !v)
        th_fail(__FILE__, line, "parse failed (%d): %s", r, err);
    if (err[0] != '\0')
        th_fail(__FILE__, line, "err not cleared on success: %s", err);
    return v;
}
#define PARSE_OK(t) parse_ok_n(__LINE__, (t), strlen(t))
#define PARSE_OK_N(t, n) parse_ok_n(__LINE__, (t), (n))

/* Expects -EPROTO, *out left NULL, and a message with a position that
 * contains part (when not NULL). Returns nothing; the message is copied to
 * msg when msg is not NULL. */
static void refused_n(int line, const char *text, size_t len, const char *part,
                      char *msg, size_t msgsize)
{
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, text, len);
    char err[256] = "";
    curfew__jval *v = (curfew__jval *)&err; /* must be reset to NULL */
    int r = curfew__json_parse(copy, len, &v, err, sizeof(err));
    free(copy);
    if (r != -EPROTO) {
        if (r == 0)
            curfew__json_free(v);
        th_fail(__FILE__, line,
                "expected -EPROTO, got %d for input of %zu "
                "bytes",
                r, len);
    }
    if (v != NULL)
        th_fail(__FILE__, line, "*out not NULL after a refusal");
    if (strncmp(err, "line ", 5) != 0 || !strstr(err, ", column "))
        th_fail(__FILE__, line, "message without a position: \"%s\"", err);
    if (part && !strstr(err, part))
        th_fail(__FILE__, line, "message \"%s\" lacks \"%s\"", err, part);
    if (msg)
        snprintf(msg, msgsize, "%s", err);
}
#define REFUSED(t, part) refused_n(__LINE__, (t), strlen(t), (part), NULL, 0)
#define REFUSED_N(t, n, part) refused_n(__LINE__, (t), (n), (part), NULL, 0)

static int valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = jr_utf8(u + i, n - i);
        if (l == 0)
            return 0;
        i += l;
    }
    return 1;
}

/* Checks what every tree must satisfy, returns its depth. */
static int tree_check(const curfew__jval *v)
{
    int deepest = 0;
    switch (v->type) {
    case CURFEW__J_NULL:
        break;
    case CURFEW__J_BOOL:
        CHECK(v->boolean == 0 || v->boolean == 1);
        break;
    case CURFEW__J_NUM:
        CHECK(isfinite(v->num));
        if (v->is_int)
            CHECK((double)v->i == v->num);
        break;
    case CURFEW__J_STR:
        CHECK(v->str != NULL);
        CHECK(v->str[v->len] == '\0');
        CHECK(valid_utf8(v->str, v->len));
        break;
    case CURFEW__J_OBJ:
        for (size_t k = 0; k < v->n; k++) {
            CHECK(v->keys[k] != NULL);
            CHECK(valid_utf8(v->keys[k], strlen(v->keys[k])));
        }
        /* fall through */
    case CURFEW__J_ARR:
        CHECK(v->n == 0 || v->items != NULL);
        for (size_t k = 0; k < v->n; k++) {
            int d = tree_check(&v->items[k]);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    default:
        CHECK(!"unknown type");
    }
    return 0;
}

/* A record as src/report/report.c writes it (R2), with the awkward parts a
 * real one can have: escapes, non-ASCII, nulls, nesting, negative codes. */
static const char sample_record[] =
    "{\"type\":\"curfew-record\",\"version\":1,\"pid\":4242,"
    "\"process\":\"br\\u00f6wser \\\"main\\\"\",\"clean\":false,"
    "\"exit_after\":null,\"elapsed_ms\":1234,\"phases\":["
    "{\"name\":\"stop-accepting\",\"start_ms\":0,\"end_ms\":0,\"blockers\":[]},"
    "{\"name\":\"persist\",\"start_ms\":12,\"end_ms\":null,\"blockers\":["
    "{\"name\":\"history db\",\"barrier\":\"persist\",\"start_ms\":12,"
    "\"end_ms\":null,\"result\":\"pending\",\"status\":\"page 3/7 \xe2\x80\xa6"
    "\"},"
    "{\"name\":\"cache\\n\\t\\u0001\",\"barrier\":\"persist\",\"start_ms\":12,"
    "\"end_ms\":40,\"result\":\"error\",\"error\":\"write (-EIO: i/o)\","
    "\"code\":-5}]}],"
    "\"broken_registrations\":[{\"name\":\"(null)\",\"error\":\"-EINVAL\","
    "\"code\":-22,\"barrier\":\"drain\",\"file\":\"a.c\",\"line\":7,"
    "\"function\":\"main\"}],\"children\":[],\"ratio\":-1.25e-2}";

/* ---- acceptance --------------------------------------------------------- */

TEST(json_scalars)
{
    curfew__jval *v = PARSE_OK("null");
    CHECK_EQ(v->type, CURFEW__J_NULL);
    curfew__json_free(v);
    v = PARSE_OK("true");
    CHECK_EQ(v->type, CURFEW__J_BOOL);
    CHECK_EQ(v->boolean, 1);
    curfew__json_free(v);
    v = PARSE_OK("false");
    CHECK_EQ(v->type, CURFEW__J_BOOL);
    CHECK_EQ(v->boolean, 0);
    curfew__json_free(v);
    v = PARSE_OK(" \t\r\n 42 \n\t");
    CHECK_EQ(v->type, CURFEW__J_NUM);
    CHECK_EQ(v->i, 42);
    curfew__json_free(v);
    v = PARSE_OK("\"\"");
    CHECK_EQ(v->type, CURFEW__J_STR);
    CHECK_EQ(v->len, 0);
    CHECK_STR(v->str, "");
    curfew__json_free(v);
    /* The text need not be NUL-terminated, and bytes past len are not
     * looked at. */
    v = PARSE_OK_N("123456", 3);
    CHECK_EQ(v->i, 123);
    curfew__json_free(v);
    v = PARSE_OK_N("[1]garbage", 3);
    CHECK_EQ(v->type, CURFEW__J_ARR);
    curfew__json_free(v);
    curfew__json_free(NULL); /* a no-op */
}

TEST(json_nested)
{
    curfew__jval *v =
        PARSE_OK("{ \"a\" : [1, {\"b\": [[], {}]}, \"x\"],\n \"c\": "
                 "{\"d\": null}, \"e\": [true, false] }");
    CHECK_EQ(v->type, CURFEW__J_OBJ);
    CHECK_EQ(v->n, 3);
    CHECK_STR(v->keys[0], "a");
    CHECK_STR(v->keys[1], "c");
    CHECK_STR(v->keys[2], "e");
    const curfew__jval *a = curfew__json_get(v, "a");
    CHECK(a && a->type == CURFEW__J_ARR && a->n == 3);
    CHECK_EQ(curfew__json_int(&a->items[0], -1), 1);
    const curfew__jval *b = curfew__json_get(&a->items[1], "b");
    CHECK(b && b->type == CURFEW__J_ARR && b->n == 2);
    CHECK_EQ(b->items[0].type, CURFEW__J_ARR);
    CHECK_EQ(b->items[0].n, 0);
    CHECK_EQ(b->items[1].type, CURFEW__J_OBJ);
    CHECK_EQ(b->items[1].n, 0);
    CHECK_STR(curfew__json_str(&a->items[2]), "x");
    const curfew__jval *d = curfew__json_get(curfew__json_get(v, "c"), "d");
    CHECK(d && d->type == CURFEW__J_NULL);
    const curfew__jval *e = curfew__json_get(v, "e");
    CHECK(e->items[0].boolean == 1 && e->items[1].boolean == 0);
    CHECK_EQ(tree_check(v), 5); /* obj, arr, obj, arr, arr */
    curfew__json_free(v);

    /* Many members: the containers grow past their first allocation. */
    char big[20000];
    size_t n = 0;
    big[n++] = '[';
    for (int i = 0; i < 1000; i++)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "%s{\"k%d\":%d}",
                              i ? "," : "", i, i);
    big[n++] = ']';
    v = PARSE_OK_N(big, n);
    CHECK_EQ(v->n, 1000);
    CHECK_EQ(curfew__json_int(curfew__json_get(&v->items[999], "k999"), -1),
             999);
    curfew__json_free(v);
}

TEST(json_sample_record)
{
    curfew__jval *v = PARSE_OK(sample_record);
    CHECK_STR(curfew__json_str(curfew__json_get(v, "type")), "curfew-record");
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "version"), -1), 1);
    CHECK_STR(curfew__json_str(curfew__json_get(v, "process")),
              "br\xc3\xb6wser \"main\"");
    const curfew__jval *ph = curfew__json_get(v, "phases");
    CHECK(ph && ph->n == 2);
    const curfew__jval *bl = curfew__json_get(&ph->items[1], "blockers");
    CHECK(bl && bl->n == 2);
    CHECK_STR(curfew__json_str(curfew__json_get(&bl->items[1], "name")),
              "cache\n\t\x01");
    CHECK_EQ(curfew__json_int(curfew__json_get(&bl->items[1], "code"), 0), -5);
    CHECK_EQ(curfew__json_get(&bl->items[0], "end_ms")->type, CURFEW__J_NULL);
    CHECK(curfew__json_get(v, "ratio")->num == -1.25e-2);
    tree_check(v);
    curfew__json_free(v);
}

TEST(json_escapes)
{
    curfew__jval *v = PARSE_OK("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"");
    CHECK_EQ(v->len, 8);
    CHECK(memcmp(v->str, "\"\\/\b\f\n\r\t", 8) == 0);
    curfew__json_free(v);
    v = PARSE_OK("\"\\u0041\\u00e9\\u20AC\\u00E9\"");
    CHECK_STR(v->str, "A\xc3\xa9\xe2\x82\xac\xc3\xa9");
    curfew__json_free(v);
    /* \u0000 is a NUL byte inside the value: len tells. */
    v = PARSE_OK("\"a\\u0000b\"");
    CHECK_EQ(v->len, 3);
    CHECK(memcmp(v->str, "a\0b", 4) == 0);
    curfew__json_free(v);
    /* DEL is not a control character for JSON. */
    v = PARSE_OK("\"\x7f\"");
    CHECK_EQ(v->len, 1);
    curfew__json_free(v);
    /* Escapes in keys are decoded too. */
    v = PARSE_OK("{\"k\\u00e9y\\n\":1}");
    CHECK(curfew__json_get(v, "k\xc3\xa9y\n") != NULL);
    curfew__json_free(v);
}

TEST(json_unicode)
{
    /* A surrogate pair is one code point, four bytes of UTF-8. */
    curfew__jval *v = PARSE_OK("\"\\ud83d\\ude00\"");
    CHECK_EQ(v->len, 4);
    CHECK_STR(v->str, "\xf0\x9f\x98\x80");
    curfew__json_free(v);
    v = PARSE_OK("\"\\uDBFF\\uDFFF|\\uD800\\uDC00\"");
    CHECK_STR(v->str, "\xf4\x8f\xbf\xbf|\xf0\x90\x80\x80");
    curfew__json_free(v);
    /* Raw UTF-8 at the edges of each length and of the valid ranges. */
    const char *ok[] = {"\xc2\x80",
                        "\xdf\xbf",
                        "\xe0\xa0\x80",
                        "\xed\x9f\xbf",
                        "\xee\x80\x80",
                        "\xef\xbf\xbf",
                        "\xf0\x90\x80\x80",
                        "\xf4\x8f\xbf\xbf",
                        "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char doc[64];
        snprintf(doc, sizeof(doc), "\"%s\"", ok[i]);
        v = PARSE_OK(doc);
        CHECK_STR(v->str, ok[i]);
        curfew__json_free(v);
    }
}

TEST(json_numbers)
{
    static const struct {
        const char *text;
        int is_int;
        int64_t i;
        double num;
    } cases[] = {
        {"0", 1, 0, 0.0},
        {"7", 1, 7, 7.0},
        {"-123", 1, -123, -123.0},
        {"9223372036854775807", 1, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", 1, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", 0, 0, 9223372036854775808.0},
        {"-9223372036854775809", 0, 0, -9223372036854775809.0},
        {"123456789012345678901234567890", 0, 0, 1.2345678901234568e29},
        {"1.5", 0, 0, 1.5},
        {"-0.25", 0, 0, -0.25},
        {"0.1", 0, 0, 0.1},
        {"-2.5e-3", 0, 0, -2.5e-3},
        {"1E2", 0, 0, 100.0},
        {"1e+2", 0, 0, 100.0},
        {"1e-2", 0, 0, 0.01},
        {"2.0", 0, 0, 2.0},
        {"1e-400", 0, 0, 0.0}, /* underflow: rounds to zero */
        {"1.7976931348623157e308", 0, 0, 1.7976931348623157e308},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        curfew__jval *v = PARSE_OK(cases[k].text);
        if (v->type != CURFEW__J_NUM || v->is_int != cases[k].is_int ||
            v->num != cases[k].num || (v->is_int && v->i != cases[k].i))
            th_fail(__FILE__, __LINE__,
                    "%s: type %d is_int %d i %" PRId64 " num %.17g",
                    cases[k].text, (int)v->type, v->is_int, v->i, v->num);
        curfew__json_free(v);
    }
    /* -0 is an integer, and keeps its sign as a double. */
    curfew__jval *v = PARSE_OK("-0");
    CHECK(v->is_int && v->i == 0 && v->num == 0.0 && signbit(v->num));
    curfew__json_free(v);
    /* A number longer than any buffer on the stack. */
    char longnum[105];
    memset(longnum, '1', 100);
    memcpy(longnum + 100, ".5e1", 5);
    v = PARSE_OK(longnum);
    CHECK(!v->is_int && fabs(v->num / 1.1111111111111111e100 - 1) < 1e-15);
    curfew__json_free(v);
    /* Numbers inside containers end at the container's punctuation. */
    v = PARSE_OK("[-1,2.5e1,0]");
    CHECK_EQ(v->n, 3);
    CHECK_EQ(v->items[0].i, -1);
    CHECK(v->items[1].num == 25.0);
    CHECK_EQ(v->items[2].i, 0);
    curfew__json_free(v);
}

TEST(json_int_helpers)
{
    curfew__jval *v = PARSE_OK("{\"i\":-7,\"f\":1.5,\"e\":1e3,\"s\":\"9\","
                               "\"big\":1e19,\"min\":-9.223372036854775808e18,"
                               "\"n\":null,\"t\":true,\"x\":\"str\"}");
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "i"), 0), -7);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "f"), 99), 99);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "e"), 0), 1000);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "s"), 99), 99);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "big"), 99), 99);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "min"), 0), INT64_MIN);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "n"), 5), 5);
    CHECK_EQ(curfew__json_int(NULL, 6), 6);
    CHECK_STR(curfew__json_str(curfew__json_get(v, "x")), "str");
    CHECK(curfew__json_str(curfew__json_get(v, "i")) == NULL);
    CHECK(curfew__json_str(curfew__json_get(v, "t")) == NULL);
    CHECK(curfew__json_str(NULL) == NULL);
    CHECK(curfew__json_get(v, "missing") == NULL);
    CHECK(curfew__json_get(v, NULL) == NULL);
    CHECK(curfew__json_get(NULL, "i") == NULL);
    /* Only objects have members. */
    CHECK(curfew__json_get(curfew__json_get(v, "x"), "x") == NULL);
    curfew__json_free(v);
    v = PARSE_OK("[\"i\"]");
    CHECK(curfew__json_get(v, "i") == NULL);
    curfew__json_free(v);
}

TEST(json_duplicate_keys)
{
    curfew__jval *v = PARSE_OK("{\"a\":1,\"b\":2,\"a\":3,\"a\":{\"x\":0}}");
    CHECK_EQ(v->n, 4); /* every member is kept in order... */
    CHECK_STR(v->keys[2], "a");
    CHECK_EQ(v->items[2].i, 3);
    /* ...and the first one wins a lookup. */
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "a"), -1), 1);
    CHECK_EQ(curfew__json_int(curfew__json_get(v, "b"), -1), 2);
    curfew__json_free(v);
}

/* ---- refusals ----------------------------------------------------------- */

TEST(json_reject_syntax)
{
    REFUSED("", "unexpected end of input, expected a value");
    REFUSED("   \n ", "unexpected end of input");
    REFUSED("[", "unexpected end of input");
    REFUSED("{", "unexpected end of input");
    REFUSED("{\"a\"", "unexpected end of input");
    REFUSED("{\"a\":", "unexpected end of input");
    REFUSED("[1,", "unexpected end of input");
    REFUSED("]", "expected a value, found ']'");
    REFUSED("[1,]", "trailing comma before ']'");
    REFUSED("{\"a\":1,}", "trailing comma before '}'");
    REFUSED("{\"a\":1 , \n }", "trailing comma");
    REFUSED("[1 2]", "expected ',' or ']', found '2'");
    REFUSED("{\"a\":1 \"b\":2}", "expected ',' or '}'");
    REFUSED("{\"a\" 1}", "expected ':' after the key, found '1'");
    REFUSED("{1:2}", "expected a string key or '}', found '1'");
    REFUSED("{\"a\":1,2:3}", "expected a string key, found '2'");
    REFUSED("{'a':1}", "found '''");
    REFUSED("[1,,2]", "expected a value, found ','");
    REFUSED("{,}", "expected a string key or '}'");
    REFUSED("/* comment */ 1", "found '/'");
    REFUSED("// comment\n1", "found '/'");
    REFUSED("[1] [2]", "unexpected data after the value");
    REFUSED("1 2", "unexpected data after the value");
    REFUSED("tru", "unexpected end of input in 'true'");
    REFUSED("trUe", "invalid literal (expected 'true')");
    REFUSED("True", "found 'T'");
    REFUSED("nul", "unexpected end of input in 'null'");
    REFUSED("nulll", "unexpected data after the value");
    REFUSED("falsey", "unexpected data after the value");
    REFUSED("undefined", "found 'u'");
    REFUSED("\"abc", "unexpected end of input in the string that starts at "
                     "line 1, column 1");
    REFUSED("[\"a\\\"]", "in the string that starts at line 1, column 2");
    REFUSED("\"\\", "unexpected end of input in the string");
    REFUSED("\"\\x\"", "invalid escape '\\x'");
    REFUSED("\"\\'\"", "invalid escape '\\''");
    REFUSED("\"\\u12G4\"", "invalid \\u escape");
    REFUSED("\"\\u12\"", "invalid \\u escape");
    REFUSED("\"\\U0041\"", "invalid escape '\\U'");
    REFUSED("\xef\xbb\xbf{}", "byte order mark");
    REFUSED("{\"a\\u0000b\":1}", "\\u0000 is not allowed in an object key");
    REFUSED_N("[1]\0", 4, "unexpected data after the value");
    REFUSED_N("\0", 1, "found byte 0x00");
    REFUSED("\x01", "found byte 0x01");
    REFUSED("\xc3\xa9", "found byte 0xc3"); /* UTF-8 outside a string */
}

TEST(json_reject_numbers)
{
    REFUSED("01", "leading zeros are not allowed");
    REFUSED("-01", "leading zeros are not allowed");
    REFUSED("[00]", "leading zeros");
    REFUSED("-", "expected a digit after '-'");
    REFUSED("-a", "expected a digit after '-'");
    REFUSED("1.", "expected a digit after the decimal point");
    REFUSED("1.e5", "expected a digit after the decimal point");
    REFUSED(".5", "found '.'");
    REFUSED("+1", "found '+'");
    REFUSED("1e", "expected a digit in the exponent");
    REFUSED("1e+", "expected a digit in the exponent");
    REFUSED("1E-x", "expected a digit in the exponent");
    REFUSED("0x10", "unexpected data after the value");
    REFUSED("NaN", "found 'N'");
    REFUSED("Infinity", "found 'I'");
    REFUSED("-Infinity", "expected a digit after '-'");
    REFUSED("1e400", "number out of range");
    REFUSED("-1e400", "number out of range");
    REFUSED("[1.0.0]", "expected ',' or ']', found '.'");
    REFUSED("1 000", "unexpected data after the value");
}

TEST(json_error_position)
{
    char msg[256];
    refused_n(__LINE__, "[1,\n  2,\n  x]", 13, NULL, msg, sizeof(msg));
    CHECK_STR(msg, "line 3, column 3: expected a value, found 'x'");
    /* Columns count characters, not bytes. */
    const char *t = "[\"\xc3\xa9\xe2\x82\xac\", x]";
    refused_n(__LINE__, t, strlen(t), NULL, msg, sizeof(msg));
    CHECK_STR(msg, "line 1, column 8: expected a value, found 'x'");
    /* CRLF line ends: the line counts, the CR is whitespace. */
    refused_n(__LINE__, "{\r\n\"a\":\r\n}", 10, NULL, msg, sizeof(msg));
    CHECK_STR(msg, "line 3, column 1: expected a value, found '}'");
    refused_n(__LINE__, "[1,\n2,]", 7, NULL, msg, sizeof(msg));
    CHECK_STR(msg, "line 2, column 2: trailing comma before ']'");
    refused_n(__LINE__, "\n\n  [", 5, NULL, msg, sizeof(msg));
    CHECK_STR(msg, "line 3, column 4: unexpected end of input, expected a "
                   "value");
}

TEST(json_invalid_utf8)
{
    static const char *const bad[] = {
        "\x80",             /* lone continuation byte */
        "\xbf",             /* lone continuation byte */
        "\xc0\x80",         /* overlong NUL */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\x80",     /* overlong */
        "\xe0\x9f\xbf",     /* overlong */
        "\xf0\x8f\xbf\xbf", /* overlong */
        "\xed\xa0\x80",     /* UTF-8 encoded surrogate */
        "\xed\xbf\xbf",     /* UTF-8 encoded surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xf5\x80\x80\x80", /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80",
        "\xfe",
        "\xff",
        "\xc3",         /* cut by the closing quote */
        "\xe2\x82",     /* cut by the closing quote */
        "\xf0\x9f\x98", /* cut by the closing quote */
        "\xc3\x28",     /* bad continuation */
        "\xe2\x28\xa1", /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char doc[32];
        int n = snprintf(doc, sizeof(doc), "[\"ok\",\"a%sz\"]", bad[i]);
        char msg[256];
        refused_n(__LINE__, doc, (size_t)n, "invalid UTF-8 in a string", msg,
                  sizeof(msg));
        /* Seven characters precede the bad byte. */
        CHECK(strncmp(msg, "line 1, column 9: ", 18) == 0);
    }
    /* In keys too, and cut by the end of the input. */
    REFUSED("{\"\xff\":1}", "invalid UTF-8");
    REFUSED_N("\"\xe2\x82", 3, NULL);
}

TEST(json_lone_surrogate)
{
    REFUSED("\"\\ud800\"", "lone surrogate \\uD800");
    REFUSED("\"\\uDBFF\"", "lone surrogate \\uDBFF");
    REFUSED("\"\\udc00\"", "lone surrogate \\uDC00: a low surrogate");
    REFUSED("\"\\udfff\\ud800\"", "lone surrogate \\uDFFF");
    REFUSED("\"\\ud800\\u0041\"", "a high surrogate must be followed");
    REFUSED("\"\\ud800\\ud800\"", "a high surrogate must be followed");
    REFUSED("\"\\ud800x\"", "a high surrogate must be followed");
    REFUSED("\"\\ud800\\n\"", "a high surrogate must be followed");
    REFUSED("\"\\ud800\\udc0\"", "a high surrogate must be followed");
    REFUSED("\"\\ud83d", "lone surrogate");
    REFUSED("{\"\\ude00\":1}", "lone surrogate");
}

TEST(json_control_bytes)
{
    for (int c = 0; c < 0x20; c++) {
        char doc[8] = {'[', '"', 'a', (char)c, '"', ']'};
        char want[64];
        snprintf(want, sizeof(want), "control character 0x%02x", c);
        refused_n(__LINE__, doc, 6, want, NULL, 0);
    }
    /* Escaped, they are fine. */
    curfew__jval *v = PARSE_OK("\"\\u0001\\u001f\\t\"");
    CHECK_EQ(v->len, 3);
    CHECK(memcmp(v->str, "\x01\x1f\t", 3) == 0);
    curfew__json_free(v);
}

static void nest(char *buf, size_t *n, int depth, int objects)
{
    *n = 0;
    for (int i = 0; i < depth; i++) {
        if (objects) {
            memcpy(buf + *n, "{\"k\":", 5);
            *n += 5;
        } else {
            buf[(*n)++] = '[';
        }
    }
    buf[(*n)++] = '0';
    for (int i = 0; i < depth; i++)
        buf[(*n)++] = objects ? '}' : ']';
}

TEST(json_depth)
{
    char buf[1024];
    size_t n;
    for (int objects = 0; objects < 2; objects++) {
        nest(buf, &n, CURFEW__JSON_MAXDEPTH, objects);
        curfew__jval *v = PARSE_OK_N(buf, n);
        CHECK_EQ(tree_check(v), CURFEW__JSON_MAXDEPTH);
        curfew__json_free(v);
        nest(buf, &n, CURFEW__JSON_MAXDEPTH + 1, objects);
        char msg[256];
        refused_n(__LINE__, buf, n, "nesting deeper than 64 levels", msg,
                  sizeof(msg));
        /* The 65th opening bracket is named. */
        CHECK_STR(strstr(msg, "column"),
                  objects ? "column 321: nesting deeper than 64 levels"
                          : "column 65: nesting deeper than 64 levels");
    }
    /* Far deeper input is refused just as quickly, without recursion. */
    size_t big = 1 << 20;
    char *deep = malloc(big);
    CHECK(deep != NULL);
    memset(deep, '[', big);
    REFUSED_N(deep, big, "nesting deeper than 64 levels");
    memset(deep, '{', big);
    REFUSED_N(deep, big, "expected a string key");
    free(deep);
}

/* R2 is read back at the next start after a crash: whatever point the
 * writer stopped at, the reader refuses the rest cleanly. */
TEST(json_truncated_prefixes)
{
    size_t len = strlen(sample_record);
    curfew__jval *v = PARSE_OK_N(sample_record, len);
    curfew__json_free(v);
    for (size_t k = 0; k < len; k++)
        REFUSED_N(sample_record, k, NULL);
}

TEST(json_err_buffer)
{
    curfew__jval *v = NULL;
    /* No message wanted. */
    CHECK_EQ(curfew__json_parse("[", 1, &v, NULL, 0), -EPROTO);
    CHECK(v == NULL);
    /* A small buffer gets a cut, terminated message. */
    char small[8];
    memset(small, 'x', sizeof(small));
    CHECK_EQ(curfew__json_parse("[", 1, &v, small, sizeof(small)), -EPROTO);
    CHECK_STR(small, "line 1,");
    char one[1] = {'x'};
    CHECK_EQ(curfew__json_parse("[", 1, &v, one, 1), -EPROTO);
    CHECK_EQ(one[0], '\0');
    /* Bad arguments. */
    char err[64];
    CHECK_EQ(curfew__json_parse("1", 1, NULL, err, sizeof(err)), -EINVAL);
    CHECK_EQ(curfew__json_parse(NULL, 1, &v, err, sizeof(err)), -EINVAL);
    CHECK_EQ(curfew__json_parse("1", 1, &v, NULL, 5), -EINVAL);
    /* NULL text with no length is empty input. */
    CHECK_EQ(curfew__json_parse(NULL, 0, &v, err, sizeof(err)), -EPROTO);
    CHECK(strstr(err, "unexpected end of input") != NULL);
}

/* Every allocation the parser makes may fail: each failure gives -ENOMEM,
 * "out of memory", no tree and no leak. */
TEST(json_enomem)
{
    /* Strings, keys, a number too long for the stack buffer, containers
     * that grow, and nesting. */
    const char *doc =
        "{\"a\":[1,2,3,4,5,6,7,8,9],\"b\":{\"c\":\"d\\u00e9\",\"e\":[[[]]],"
        "\"f\":1,\"g\":2,\"h\":3,\"i\":4,\"j\":5},\"n\":1234567890123456789"
        "0123456789012345678901234567890123456789012345678901234567890.5,"
        "\"s\":[\"x\",\"y\",\"z\",{},{\"q\":null},true,false,\"w\"]}";
    char err[128];
    long k;
    curfew__jval *v = NULL;
    for (k = 0;; k++) {
        fi_count = 0;
        fi_fail_at = k;
        fi_live = 0;
        v = NULL;
        int r = fi_json_parse(doc, strlen(doc), &v, err, sizeof(err));
        if (r == 0)
            break;
        if (r != -ENOMEM)
            th_fail(__FILE__, __LINE__, "allocation %ld: got %d (%s)", k, r,
                    err);
        CHECK(v == NULL);
        CHECK_STR(err, "out of memory");
        if (fi_live != 0)
            th_fail(__FILE__, __LINE__, "allocation %ld failed: %ld leaked", k,
                    fi_live);
        CHECK(k < 10000);
    }
    CHECK(k > 20); /* the document did make many allocations */
    CHECK(fi_json_get(v, "b") != NULL);
    CHECK_STR(fi_json_str(fi_json_get(fi_json_get(v, "b"), "c")), "d\xc3\xa9");
    CHECK_EQ(fi_json_int(fi_json_get(fi_json_get(v, "b"), "j"), 0), 5);
    fi_json_free(v);
    CHECK_EQ(fi_live, 0);
    fi_fail_at = -1;

    /* A failure after a refusal was decided is still a refusal; a failure
     * before it is -ENOMEM; neither leaks. */
    const char *bad = "{\"a\":[\"x\",{\"b\":\"y\"}],\"c\":[1,2,}";
    for (k = 0; k < 30; k++) {
        fi_count = 0;
        fi_fail_at = k;
        fi_live = 0;
        int r = fi_json_parse(bad, strlen(bad), &v, err, sizeof(err));
        CHECK(r == -ENOMEM || r == -EPROTO);
        CHECK_EQ(fi_live, 0);
    }
    fi_fail_at = -1;
}

/* ---- R4: what the writer produces, the reader gives back ---------------- */

static curfew__jval *write_and_parse(const char *s, size_t n)
{
    char buf[2048];
    curfew__jw w;
    curfew__jw_init(&w, -1, buf, sizeof(buf));
    curfew__jw_obj(&w);
    curfew__jw_key(&w, "k");
    curfew__jw_strn(&w, s, n);
    curfew__jw_obj_end(&w);
    CHECK_EQ(curfew__jw_finish(&w), 0);
    curfew__jval *v = PARSE_OK(buf);
    return v;
}

TEST(json_writer_roundtrip)
{
    /* R4: every single byte, between two letters. */
    for (int b = 0; b < 256; b++) {
        char s[3] = {'a', (char)b, 'z'};
        curfew__jval *v = write_and_parse(s, 3);
        const curfew__jval *k = curfew__json_get(v, "k");
        CHECK(k && k->type == CURFEW__J_STR);
        if (b < 0x80) {
            CHECK_EQ(k->len, 3);
            CHECK(memcmp(k->str, s, 3) == 0);
        } else {
            /* Not UTF-8 alone: the writer replaces it with U+FFFD. */
            CHECK_STR(k->str, "a\xef\xbf\xbdz");
        }
        curfew__json_free(v);
    }
    /* Valid UTF-8 of every length, and mixed garbage, survive as text. */
    const char *s = "\"q\\ \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f\x1b\r";
    curfew__jval *v = write_and_parse(s, strlen(s));
    CHECK_STR(curfew__json_str(curfew__json_get(v, "k")), s);
    curfew__json_free(v);
    v = write_and_parse("\xed\xa0\x80\xc0\xaf", 5);
    const curfew__jval *k = curfew__json_get(v, "k");
    CHECK(valid_utf8(k->str, k->len));
    curfew__json_free(v);
}

/* ---- no input crashes the reader ---------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void parse_any(const char *text, size_t len)
{
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, text, len);
    char err[200];
    curfew__jval *v = NULL;
    int r = curfew__json_parse(copy, len, &v, err, sizeof(err));
    free(copy);
    if (r == 0) {
        CHECK(v != NULL);
        tree_check(v);
        curfew__json_free(v);
    } else {
        CHECK_EQ(r, -EPROTO);
        CHECK(v == NULL);
        CHECK(strncmp(err, "line ", 5) == 0);
    }
}

TEST(json_random_inputs)
{
    static const char alphabet[] = "{}[]\",:0123456789-+.eEtrufalsn \n\\u"
                                   "dDcC\x80\xbf\xc3\xa9\xed\xf0\xff";
    size_t len = strlen(sample_record);
    char buf[4096];
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        size_t n;
        if (round % 4 == 0) {
            n = rng() % 64;
            for (size_t i = 0; i < n; i++)
                buf[i] = alphabet[rng() % (sizeof(alphabet) - 1)];
        } else {
            /* A few mutations of a valid record. */
            memcpy(buf, sample_record, len);
            n = len;
            int edits = 1 + (int)(rng() % 4);
            for (int e = 0; e < edits && n > 0; e++) {
                size_t at = rng() % n;
                switch (rng() % 4) {
                case 0:
                    buf[at] = (char)rng();
                    break;
                case 1:
                    buf[at] = alphabet[rng() % (sizeof(alphabet) - 1)];
                    break;
                case 2: /* delete a byte */
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                    break;
                default: /* cut */
                    n = at + 1;
                    break;
                }
            }
        }
        parse_any(buf, n);
        curfew__jval *v = NULL;
        if (curfew__json_parse(buf, n, &v, NULL, 0) == 0) {
            accepted++;
            curfew__json_free(v);
        }
    }
    /* Some mutations (inside strings, say) stay valid: both sides ran. */
    CHECK(accepted > 0);
    CHECK(accepted < 20000);
}
