/* curfew-report: reads a shutdown record (R2), hang report (R1) or state
 * report and shows it (R3).
 *
 *   curfew-report show FILE    timeline in the terminal
 *   curfew-report trace FILE   Chrome trace-event JSON on standard output
 *   curfew-report svg FILE     SVG timeline on standard output
 *
 * FILE may be "-" for standard input. Exit status: 0 done; 1 usage error;
 * 2 the input could not be read or is not a valid curfew document (one
 * line on standard error says why: R3), or the output could not be
 * written.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* struct winsize, TIOCGWINSZ */
#endif
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const char usage[] =
    "usage: curfew-report show|trace|svg FILE\n"
    "  show   print a timeline of the shutdown in the terminal\n"
    "  trace  write Chrome trace-event JSON (Perfetto, chrome://tracing)\n"
    "  svg    write an SVG timeline\n"
    "FILE is a curfew shutdown record, hang report or state report; - reads\n"
    "standard input.\n";

/* Text in a message (a file name, the loader's words), control bytes
 * escaped: the message stays one line (R3). */
static void put_name(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7F)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
}

static void fail_line(const char *file, const char *msg)
{
    fputs("curfew-report: ", stderr);
    if (file) {
        put_name(file);
        fputs(": ", stderr);
    }
    put_name(msg);
    fputc('\n', stderr);
}

static int terminal_width(void)
{
    struct winsize ws;
    if (isatty(1) && ioctl(1, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *c = getenv("COLUMNS");
    if (c && *c) {
        char *end;
        long v = strtol(c, &end, 10);
        if (*end == '\0' && v >= 40 && v <= 1000)
            return (int)v;
    }
    return 80;
}

int main(int argc, char **argv)
{
    if (argc == 2 &&
        (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc != 3) {
        fputs(usage, stderr);
        return 1;
    }
    const char *cmd = argv[1], *file = argv[2];
    int which;
    if (strcmp(cmd, "show") == 0)
        which = 0;
    else if (strcmp(cmd, "trace") == 0)
        which = 1;
    else if (strcmp(cmd, "svg") == 0)
        which = 2;
    else {
        fputs("curfew-report: unknown command \"", stderr);
        put_name(cmd);
        fputs("\"\n", stderr);
        fputs(usage, stderr);
        return 1;
    }

    cr_model *m;
    char err[512];
    int rc = cr_model_load_file(file, &m, err, sizeof err);
    if (rc != 0) {
        fail_line(strcmp(file, "-") == 0 ? "(standard input)" : file,
                  err[0] ? err : strerror(-rc));
        return 2;
    }
    switch (which) {
    case 0:
        rc = cr_show(stdout, m, terminal_width());
        break;
    case 1:
        rc = cr_trace(stdout, m);
        break;
    default:
        rc = cr_svg(stdout, m);
        break;
    }
    cr_model_free(m);
    if (fflush(stdout) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && ferror(stdout))
        rc = -EIO;
    if (rc != 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "writing the output: %s", strerror(-rc));
        fail_line(NULL, msg);
        return 2;
    }
    return 0;
}
