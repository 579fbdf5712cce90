#!/bin/sh
# adapters.install_pkgconfig (S4, S5): install the build into a temporary
# prefix, build each adapter's example outside the tree with
# `pkg-config --cflags --libs curfew-uv` (curfew-glib), run it and stop it
# with SIGTERM: it must exit 0 after a clean shutdown.
#
#   sh tests/adapters/install.sh BUILD_DIR SOURCE_DIR CC [SANITIZER_FLAGS]
#
# An adapter whose .pc file was not installed (its library was not found at
# build time) is skipped; with neither, the script exits 77 (skipped).
#
# SPDX-License-Identifier: MIT
set -eu

if [ "$#" -lt 3 ]; then
    echo "usage: $0 BUILD_DIR SOURCE_DIR CC [SANITIZER_FLAGS]" >&2
    exit 2
fi
build=$1
src=$2
cc=$3
san=$(printf '%s\n' "${4-}" | tr ';' ' ')

fail() {
    echo "adapters install check: FAIL: $*" >&2
    exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/curfew-adapters.XXXXXX") || fail "mktemp"
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "cmake --install failed"
}

# run_until NAME PROGRAM READY_TEXT: starts PROGRAM, waits for READY_TEXT on
# its stdout, sends SIGTERM, expects exit 0.
run_until() {
    name=$1
    prog=$2
    ready=$3
    "$prog" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    i=0
    until grep -q "$ready" "$tmp/$name.out" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 400 ] || fail "$name did not print \"$ready\""
        sleep 0.05
    done
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    pid=
    [ "$rc" -eq 0 ] || {
        cat "$tmp/$name.out" "$tmp/$name.err" >&2
        fail "$name exited with status $rc after SIGTERM"
    }
    echo "adapters install check: $name: $(tail -n 1 "$tmp/$name.out")"
}

# check MODULE EXAMPLE_SOURCE NAME READY_TEXT
checked=0
check() {
    module=$1
    example=$2
    name=$3
    ready=$4
    pc=$(find "$tmp/prefix" -type f -name "$module.pc")
    if [ -z "$pc" ]; then
        echo "adapters install check: $module not installed: skipped"
        return 0
    fi
    pcdir=$(dirname "$pc")
    flags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs "$module") ||
        fail "pkg-config --cflags --libs $module failed"
    libdir=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir "$module")
    echo "adapters install check: $module: $flags"
    # shellcheck disable=SC2086 # $cc, $san and $flags are word lists.
    $cc $san -std=c11 -Wall -Wextra -Werror -pthread -o "$tmp/$name" \
        "$src/$example" $flags ||
        fail "$example does not build against the installed $module"
    LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export LD_LIBRARY_PATH
    run_until "$name" "$tmp/$name" "$ready"
    checked=$((checked + 1))
}

check curfew-uv examples/uv/echo.c uv-echo "listening on"
check curfew-glib examples/glib/ticker.c glib-ticker "ready"
[ "$checked" -gt 0 ] || exit 77
echo "adapters install check: ok"
