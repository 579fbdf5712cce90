#!/bin/sh
# install.pkgconfig (S5): install the build into a temporary prefix, build a
# program outside the tree with `pkg-config --cflags --libs curfew`, run it.
#
#   sh tests/install/check.sh BUILD_DIR SOURCE_DIR CC [SANITIZER_FLAGS]
#
# SANITIZER_FLAGS may be empty or a CMake list ("a;b;c"). Exits non-zero if
# any step fails; always removes its temporary directory.
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
# CMake passes a list with ';' between the flags.
san=$(printf '%s\n' "${4-}" | tr ';' ' ')

fail() {
    echo "install check: FAIL: $*" >&2
    exit 1
}

command -v pkg-config >/dev/null 2>&1 || fail "pkg-config is not installed"
[ -d "$build" ] || fail "no build directory $build"
[ -f "$src/tests/install/hello.c" ] || fail "no $src/tests/install/hello.c"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/curfew-install.XXXXXX") ||
    fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
prefix=$tmp/prefix

echo "install check: cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || {
    cat "$tmp/install.log" >&2
    fail "cmake --install failed"
}

# The libdir is lib, lib64 or lib/<multiarch>: find the one curfew.pc.
pc=$(find "$prefix" -type f -name curfew.pc)
[ -n "$pc" ] || fail "no curfew.pc installed under $prefix"
[ "$(printf '%s\n' "$pc" | wc -l)" -eq 1 ] || fail "several curfew.pc: $pc"
pcdir=$(dirname "$pc")
echo "install check: found $pc"

[ -f "$prefix/include/curfew.h" ] || fail "include/curfew.h not installed"
[ -f "$prefix/include/curfew/core.h" ] || fail "include/curfew/core.h not installed"

cflags=$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags curfew) ||
    fail "pkg-config --cflags curfew failed"
libs=$(PKG_CONFIG_PATH=$pcdir pkg-config --libs curfew) ||
    fail "pkg-config --libs curfew failed"
libdir=$(PKG_CONFIG_PATH=$pcdir pkg-config --variable=libdir curfew) ||
    fail "pkg-config --variable=libdir curfew failed"
echo "install check: cflags: $cflags"
echo "install check: libs:   $libs"

# The .pc file must point into the prefix it was installed in.
[ -f "$libdir/pkgconfig/curfew.pc" ] ||
    fail "libdir $libdir from curfew.pc does not hold pkgconfig/curfew.pc"
ls "$libdir"/libcurfew.so* >/dev/null 2>&1 ||
    fail "no libcurfew.so in libdir $libdir"

echo "install check: building hello.c"
# shellcheck disable=SC2086 # $cc, $san, $cflags and $libs are word lists.
$cc $san -std=c11 -Wall -Wextra -Werror -pthread \
    -o "$tmp/hello" "$src/tests/install/hello.c" $cflags $libs ||
    fail "hello.c does not build against the installed curfew"

echo "install check: running hello"
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$tmp/hello" ||
    fail "hello exited with status $?"

echo "install check: ok"
