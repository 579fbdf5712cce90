#!/bin/sh
# The curfew-demo tests: one run (two for serial_slower) of the demo per
# case, then tests/demo/check.py checks its invariants from what it printed
# and the files it left.
#
#   sh tests/demo/check.sh CASE DEMO OUTDIR PYTHON3
#
# CASE is normal, crash_child, hang_child, hang_worker, hang_io or
# serial_slower; DEMO the curfew-demo binary; OUTDIR a directory for the
# runs' files (emptied first, kept afterwards for a look).
#
# SPDX-License-Identifier: MIT
set -u

if [ "$#" -ne 4 ]; then
    echo "usage: $0 CASE DEMO OUTDIR PYTHON3" >&2
    exit 2
fi
case_name=$1
demo=$2
out=$3
python=$4
here=$(cd "$(dirname "$0")" && pwd)

# The timeline's width must not depend on the terminal of whoever runs it.
unset COLUMNS

# In the hang cases a watchdog ends a process with _exit() by design
# (CURFEW_TIMEOUT_EXIT), leaving finished threads unjoined: not a leak
# worth a ThreadSanitizer report there. Data races are still reported.
case $case_name in
hang_*) TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}report_thread_leaks=0"
    export TSAN_OPTIONS ;;
esac
rm -rf "$out"
mkdir -p "$out" || exit 1

fail() {
    echo "demo.$case_name: FAIL: $*" >&2
    for f in "$out"/*.out "$out"/*.err; do
        [ -s "$f" ] || continue
        echo "--- $f" >&2
        tail -n 60 "$f" >&2
    done
    exit 1
}

# run NAME EXPECTED-STATUS ARGS...: one run of the demo into $out/NAME,
# its output in $out/NAME.out and $out/NAME.err.
run() {
    name=$1
    want=$2
    shift 2
    rc=0
    "$demo" --out "$out/$name" "$@" >"$out/$name.out" 2>"$out/$name.err" ||
        rc=$?
    # A sanitizer report in the browser or a tab fails the case, whatever
    # the exit status.
    if grep -E -q 'Sanitizer|runtime error:' "$out/$name.err"; then
        fail "sanitizer report in the $name run"
    fi
    [ "$rc" = "$want" ] || fail "the $name run exited with $rc, not $want"
}

check() {
    "$python" "$here/check.py" "$@" || fail "check.py $*"
}

case $case_name in
normal)
    run run 0 --tabs 3 --seconds 1
    check normal 3 "$out/run" "$out/run.out"
    ;;
crash_child)
    run run 0 --tabs 3 --seconds 1 --crash-child
    check crash_child 3 "$out/run" "$out/run.out"
    ;;
hang_child)
    run run 70 --tabs 2 --seconds 1 --hang=child
    check hang_child 2 "$out/run" "$out/run.out"
    ;;
hang_worker)
    run run 70 --tabs 2 --seconds 1 --hang=worker
    check hang_worker 2 "$out/run" "$out/run.out"
    ;;
hang_io)
    run run 70 --tabs 2 --seconds 1 --hang=io
    check hang_io 2 "$out/run" "$out/run.out"
    ;;
serial_slower)
    run default 0 --tabs 3 --seconds 1
    run serial 0 --tabs 3 --seconds 1 --serial
    check serial_slower 3 "$out/default" "$out/default.out" \
        "$out/serial" "$out/serial.out"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
echo "demo.$case_name: ok"
