/* Test hooks of the io module: fail the Nth write, fsync or rename, the
 * SQLite way of fault injection (I6). Not installed.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef CURFEW_IO_INTERNAL_H
#define CURFEW_IO_INTERNAL_H

#include <stdatomic.h>

enum { CURFEW__IO_WRITE = 0, CURFEW__IO_FSYNC = 1, CURFEW__IO_RENAME = 2 };

/* at[op] = N > 0: the Nth call of op from now fails with -err[op] (a
 * positive errno value); count[op] counts the calls. A test sets them
 * before it starts writes; 0 turns the hook off. */
typedef struct curfew__io_faults {
    _Atomic int at[3];
    _Atomic int err[3];
    _Atomic int count[3];
} curfew__io_faults;

extern curfew__io_faults curfew__io_fault;

/* Sets a fault: op fails with errno err on its nth call from now. */
void curfew__io_fail_nth(int op, int nth, int err);

#endif
