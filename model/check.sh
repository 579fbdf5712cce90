#!/bin/sh
# Checks one Promela model of the channel handshakes with spin (contract
# A6): sh model/check.sh NAME   (NAME: actor, manager, willclose, ...)
#
# SPDX-License-Identifier: MIT
#
# Generates the verifier (spin -a), compiles it (safety properties:
# assertions and invalid end states, i.e. deadlocks; exhaustive search,
# states stored whole, collapse compression), runs it, and exits non-zero
# if it found an error (the counterexample is replayed on stderr), if the
# search was incomplete (depth or memory bound), or if a tool failed.
# Works in a temporary directory, removed at the end.
#
# Environment: SPIN (default spin), CC (default cc), MODEL_MEMLIM (MB,
# default 4096), MODEL_DEPTH (default 100000), MODEL_DEFINES (extra -D
# options for spin, e.g. -DNOCRASH).
set -u

name=${1:-}
case $name in
'' | */* | *.pml)
    echo "usage: sh model/check.sh NAME   (model/NAME.pml)" >&2
    exit 2
    ;;
esac

dir=$(cd "$(dirname "$0")" && pwd) || exit 2
if [ ! -f "$dir/$name.pml" ]; then
    echo "check.sh: no model $dir/$name.pml" >&2
    exit 2
fi

spin=${SPIN:-spin}
cc=${CC:-cc}
memlim=${MODEL_MEMLIM:-4096}
depth=${MODEL_DEPTH:-100000}
defines=${MODEL_DEFINES:-}

if ! command -v "$spin" >/dev/null 2>&1; then
    echo "check.sh: $spin not found (Debian: apt-get install spin)" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/curfew-model.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

# The model and what it includes, so that nothing is written next to it.
cp "$dir"/*.pml "$dir"/*.inc "$tmp"/ 2>/dev/null
cp "$dir/$name.pml" "$tmp/" || exit 2
cd "$tmp" || exit 2

echo "== spin -a $defines $name.pml"
# shellcheck disable=SC2086 # defines is a list of options
if ! "$spin" $defines -a "$name.pml" >spin.out 2>&1; then
    cat spin.out >&2
    echo "check.sh: spin -a failed" >&2
    exit 1
fi
if grep -qi 'error' spin.out; then
    cat spin.out >&2
    echo "check.sh: spin -a reported an error" >&2
    exit 1
fi

if ! "$cc" -O2 -w -DSAFETY -DCOLLAPSE -DMEMLIM="$memlim" -o pan pan.c \
    >cc.out 2>&1; then
    cat cc.out >&2
    echo "check.sh: compiling the verifier failed" >&2
    exit 1
fi

start=$(date +%s)
./pan -m"$depth" >pan.out 2>&1
rc=$?
end=$(date +%s)
cat pan.out

fail=0
errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' pan.out | tail -n 1)
if [ "$rc" -ne 0 ] || [ -z "$errors" ]; then
    echo "check.sh: the verifier failed (exit $rc)" >&2
    fail=1
elif [ "$errors" -ne 0 ]; then
    echo "check.sh: $name: $errors error(s); the counterexample:" >&2
    if [ -f "$name.pml.trail" ]; then
        # shellcheck disable=SC2086
        "$spin" $defines -t -p -g -l "$name.pml" 2>&1 | tail -n 400 >&2
    fi
    fail=1
fi
incomplete='max search depth too small|Search not completed|MEMLIM'
incomplete="$incomplete|out of memory|aborted"
if grep -Eq "$incomplete" pan.out; then
    echo "check.sh: $name: the search was incomplete" >&2
    fail=1
fi

states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' pan.out | head -n 1)
echo "== $name: ${states:-?} states, $((end - start)) s, errors ${errors:-?}" \
    "$([ "$fail" -eq 0 ] && echo OK || echo FAILED)"
exit "$fail"
