/* libFuzzer target for the curfew-report tool (R3, R4): arbitrary bytes go
 * to the model loader; whatever loads is rendered by show, trace and svg
 * into /dev/null. Any crash, sanitizer report or leak is a bug: malformed
 * input must give -EPROTO and a message, never more.
 *
 * Built by cmake/fuzz.cmake (-DCURFEW_FUZZ=ON, clang) with the tool's
 * sources except main.c.
 *
 * SPDX-License-Identifier: MIT
 */
#include "model.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!sink) {
        sink = fopen("/dev/null", "w");
        if (!sink)
            abort();
    }
    char err[512];
    cr_model *m = NULL;
    int rc =
        cr_model_load_buffer((const char *)data, size, &m, err, sizeof err);
    if (rc != 0) {
        /* Refused: with a one-line message, and no model. */
        if (m != NULL || (rc != -EPROTO && rc != -ENOMEM))
            abort();
        if (rc == -EPROTO && (err[0] == '\0' || strchr(err, '\n')))
            abort();
        return 0;
    }
    /* The width varies with the input, so narrow and wide layouts are
     * both exercised. */
    int width = 40 + (int)(size % 200);
    if (cr_show(sink, m, width) == -EIO || cr_trace(sink, m) == -EIO ||
        cr_svg(sink, m) == -EIO)
        abort();
    cr_model_free(m);
    return 0;
}
