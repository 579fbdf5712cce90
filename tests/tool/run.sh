#!/bin/sh
# The curfew-report tests (R3, R4): one case per run.
#
#   sh tests/tool/run.sh CASE TOOL GEN DATADIR
#
# TOOL is the curfew-report binary, GEN curfew-tool-gen (tests/tool/gen.c),
# DATADIR this directory (for check.py). Each case makes real documents with
# the library in a temporary directory, runs the tool and checks what it
# printed and its exit status: 0 for good input, 2 and one line on standard
# error for bad input, 1 for usage errors. A sanitizer report fails the case
# whatever the exit status.
#
# SPDX-License-Identifier: MIT
set -u

if [ "$#" -ne 4 ]; then
    echo "usage: $0 CASE TOOL GEN DATADIR" >&2
    exit 2
fi
case_name=$1
tool=$2
gen=$3
data=$4

# The show command takes its width from COLUMNS when not on a terminal.
unset COLUMNS

tmp=$(mktemp -d "${TMPDIR:-/tmp}/curfew-tool.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

fail() {
    echo "tool.$case_name: FAIL: $*" >&2
    if [ -s "$tmp/err" ]; then
        echo "--- stderr of the last run:" >&2
        head -c 4000 "$tmp/err" >&2
    fi
    exit 1
}

# Documents made by the library itself.
generate() {
    "$gen" "$tmp" 2>"$tmp/gen.err" || {
        cat "$tmp/gen.err" >&2
        fail "curfew-tool-gen failed"
    }
    if grep -E -q 'Sanitizer|runtime error:' "$tmp/gen.err"; then
        cat "$tmp/gen.err" >&2
        fail "sanitizer report from curfew-tool-gen"
    fi
    for f in record.json record-hung.json hang.json state.json; do
        [ -s "$tmp/$f" ] || fail "curfew-tool-gen wrote no $f"
    done
}

pycheck() {
    python3 "$data/check.py" "$@" >"$tmp/check.out" 2>&1 || {
        cat "$tmp/check.out" >&2
        fail "check.py $1 failed"
    }
}

sanitizer_clean() {
    if grep -E -q 'Sanitizer|runtime error:|LeakSanitizer' "$tmp/err"; then
        fail "sanitizer report"
    fi
}

# run WANT ARGS...: runs the tool, stdout to $tmp/out, stderr to $tmp/err.
run() {
    want=$1
    shift
    "$tool" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    sanitizer_clean
    [ "$rc" -eq "$want" ] ||
        fail "curfew-report $* exited $rc, expected $want"
    if [ "$want" -eq 2 ]; then
        # R3: a clear error: one line naming the tool, nothing on stdout.
        [ "$(wc -l <"$tmp/err")" -eq 1 ] ||
            fail "curfew-report $*: expected one line on stderr"
        grep -q '^curfew-report: ' "$tmp/err" ||
            fail "curfew-report $*: message does not start with the name"
        [ ! -s "$tmp/out" ] || fail "curfew-report $*: output on stdout"
    fi
}

# run_stdin WANT FILE ARGS...: as run, with FILE on standard input.
run_stdin() {
    want=$1
    input=$2
    shift 2
    "$tool" "$@" <"$input" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    sanitizer_clean
    [ "$rc" -eq "$want" ] ||
        fail "curfew-report $* < $input exited $rc, expected $want"
}

# bad FILE [WORDS]: every command refuses FILE with exit 2 (and a message
# containing WORDS when given).
bad() {
    for cmd in show trace svg; do
        run 2 "$cmd" "$1"
        if [ -n "${2-}" ]; then
            grep -F -q -- "$2" "$tmp/err" ||
                fail "curfew-report $cmd $1: message lacks \"$2\": $(cat "$tmp/err")"
        fi
    done
}

# bad1 FILE [WORDS]: as bad, with show only (all commands share the loader).
bad1() {
    run 2 show "$1"
    if [ -n "${2-}" ]; then
        grep -F -q -- "$2" "$tmp/err" ||
            fail "curfew-report show $1: message lacks \"$2\": $(cat "$tmp/err")"
    fi
}

# has TEXT...: each TEXT appears in the last output.
has() {
    for t in "$@"; do
        grep -F -q -- "$t" "$tmp/out" ||
            fail "output lacks \"$t\"; output was: $(head -c 3000 "$tmp/out")"
    done
}

# good_all DOC: show, trace and svg accept DOC and their outputs check out.
good_all() {
    doc=$1
    run 0 show "$doc"
    cp "$tmp/out" "$tmp/x.txt"
    run 0 trace "$doc"
    cp "$tmp/out" "$tmp/x.trace"
    run 0 svg "$doc"
    cp "$tmp/out" "$tmp/x.svg"
    pycheck width "$tmp/x.txt" 80 + trace "$tmp/x.trace" "$doc" + \
        svg "$tmp/x.svg" "$doc"
    render "$tmp/x.svg"
}

render() {
    rm -f "$tmp/x.png"
    rsvg-convert "$1" -o "$tmp/x.png" 2>"$tmp/rsvg.err" || {
        cat "$tmp/rsvg.err" >&2
        fail "rsvg-convert failed on $1"
    }
    [ -s "$tmp/x.png" ] || fail "rsvg-convert made an empty PNG"
}

case $case_name in
show_record)
    generate
    run 0 show "$tmp/record.json"
    has 'curfew-record: process "gen \"demo\" <&>"' 'shutdown: clean' \
        stop-accepting drain persist final 'http listener' 'request pool' \
        'history db' FAILED 'fsync(history.db) failed' TIMEOUT \
        'cache > stuck' removed 'broken registrations (2)' \
        '"(null)" on drain' 'late \"listener\" <a&b>' '-ESHUTDOWN' \
        'tele"metry" <svg>&'
    pycheck width "$tmp/out" 80
    ;;
show_hang)
    generate
    run 0 show "$tmp/hang.json"
    has 'curfew-hang' 'hung in phase "persist"' \
        'barrier persist > cache: waited' '(timeout 1000 ms)' \
        'pending conditions (2)' 'stuck "db" <svg>&\nline2' 'cache index' \
        'status: waiting for lock "L" <&> \ \t' 'gen.c:' 'in main()' \
        'age ' PENDING 'broken registrations (2)'
    pycheck width "$tmp/out" 80
    ;;
show_state)
    generate
    run 0 show "$tmp/state.json"
    has 'curfew-state' 'in phase "drain"' 'barrier drain: waited' \
        'request pool' '17 requests in flight' 'websocket sessions' RUNNING
    ;;
show_hung_record)
    generate
    run 0 show "$tmp/record-hung.json"
    has 'NOT CLEAN' 'stopped in phase "persist"' RUNNING PENDING \
        'not started' 'cache > stuck'
    ;;
show_width)
    # Bars are scaled to the width (COLUMNS when not on a terminal).
    generate
    checks=""
    for cols in 40 57 80 132 300; do
        export COLUMNS=$cols
        run 0 show "$tmp/record.json"
        cp "$tmp/out" "$tmp/r$cols.txt"
        run 0 show "$tmp/hang.json"
        cp "$tmp/out" "$tmp/h$cols.txt"
        checks="$checks + width $tmp/r$cols.txt $cols + width $tmp/h$cols.txt $cols"
    done
    # shellcheck disable=SC2086 # the list is split on purpose
    pycheck ${checks# + }
    awk 'length($0) > 200 { found = 1 } END { exit !found }' "$tmp/out" ||
        fail "COLUMNS=300 did not widen the bars"
    ;;
stdin)
    generate
    run_stdin 0 "$tmp/record.json" show -
    has 'http listener'
    run_stdin 0 "$tmp/hang.json" trace -
    cp "$tmp/out" "$tmp/t.json"
    pycheck trace "$tmp/t.json" "$tmp/hang.json"
    printf '{"type":' >"$tmp/cut.json"
    run_stdin 2 "$tmp/cut.json" svg -
    grep -q '^curfew-report: (standard input): malformed JSON' "$tmp/err" ||
        fail "stdin error message: $(cat "$tmp/err")"
    ;;
trace_record)
    generate
    run 0 trace "$tmp/record.json"
    cp "$tmp/out" "$tmp/r.trace"
    has '"traceEvents"' '"ph":"X"' '"ph":"M"' '"thread_name"' \
        '"barrier cache"' '"result":"timeout"' '"result":"error"'
    run 0 trace "$tmp/record-hung.json"
    cp "$tmp/out" "$tmp/h.trace"
    has '"result":"pending"'
    pycheck trace "$tmp/r.trace" "$tmp/record.json" + \
        trace "$tmp/h.trace" "$tmp/record-hung.json"
    ;;
trace_hang)
    generate
    run 0 trace "$tmp/hang.json"
    pycheck trace "$tmp/out" "$tmp/hang.json"
    has '"hang report"' '"barrier_path":["persist","cache"]'
    ;;
trace_state)
    generate
    run 0 trace "$tmp/state.json"
    pycheck trace "$tmp/out" "$tmp/state.json"
    has '"state report"'
    ;;
svg_record)
    generate
    for f in record-hung record; do
        run 0 svg "$tmp/$f.json"
        cp "$tmp/out" "$tmp/$f.svg"
        render "$tmp/$f.svg"
    done
    pycheck svg "$tmp/record.svg" "$tmp/record.json" + \
        svg "$tmp/record-hung.svg" "$tmp/record-hung.json"
    has '<svg' 'version="1.1"' ' ms</text>' '#e53935' '#fb8c00'
    ;;
svg_hang)
    generate
    run 0 svg "$tmp/hang.json"
    cp "$tmp/out" "$tmp/h.svg"
    pycheck svg "$tmp/h.svg" "$tmp/hang.json"
    render "$tmp/h.svg"
    has 'hang report' 'persist &gt; cache' 'stuck &quot;db&quot; &lt;svg&gt;&amp;\nline2'
    ;;
svg_state)
    generate
    good_all "$tmp/state.json"
    ;;
usage)
    run 1
    run 1 show
    run 1 bogus "$tmp/x"
    run 1 show a b
    grep -q '^usage: curfew-report' "$tmp/err" || fail "no usage text"
    run 0 --help
    has 'usage: curfew-report show|trace|svg FILE'
    ;;
missing_file)
    bad "$tmp/no-such-file.json" 'cannot open'
    # A name with a newline stays on one line.
    bad "$tmp/no
such" 'cannot open'
    ;;
directory)
    mkdir "$tmp/dir"
    bad "$tmp/dir" 'cannot read'
    ;;
empty)
    : >"$tmp/empty.json"
    bad "$tmp/empty.json" 'empty input'
    printf ' \n\t\r\n ' >"$tmp/blank.json"
    bad "$tmp/blank.json" 'empty input'
    ;;
garbage)
    printf '\000\001\002\003\377\376' >"$tmp/g1"
    printf '{{{{{{' >"$tmp/g2"
    printf ']' >"$tmp/g3"
    printf 'nul' >"$tmp/g4"
    printf '{"type":"curfew-record"}{"x":1}' >"$tmp/g5"
    printf '\357\273\277{"type":"curfew-record"}' >"$tmp/g6" # BOM
    printf '{"type":"curfew-record",}' >"$tmp/g7"
    printf "{'type':'curfew-record'}" >"$tmp/g8"
    printf '{"type":"curfew-\\ud800"}' >"$tmp/g9"
    head -c 65536 /dev/urandom >"$tmp/g10"
    for i in 1 2 3 4 5 6 7 8 9 10; do
        bad "$tmp/g$i"
    done
    ;;
truncated)
    # A document cut anywhere is refused with a message, never a crash.
    generate
    for f in record hang state record-hung; do
        len=$(wc -c <"$tmp/$f.json")
        # The last byte is the newline: cutting it leaves a valid file.
        step=$((len / 17 + 1))
        n=1
        while [ "$n" -lt $((len - 1)) ]; do
            head -c "$n" "$tmp/$f.json" >"$tmp/cut.json"
            bad1 "$tmp/cut.json" 'malformed JSON'
            n=$((n + step))
        done
        for n in 2 $((len - 2)); do
            head -c "$n" "$tmp/$f.json" >"$tmp/cut.json"
            bad "$tmp/cut.json" 'malformed JSON'
        done
    done
    ;;
deep)
    # Deep nesting is refused by the reader, not by the stack.
    python3 -c 'import sys; sys.stdout.write("[" * 200000)' >"$tmp/deep1"
    python3 -c 'import sys; sys.stdout.write("{\"a\":" * 100000)' >"$tmp/deep2"
    python3 -c 'import sys; sys.stdout.write("[" * 50 + "]" * 50)' >"$tmp/deep3"
    bad "$tmp/deep1" 'malformed JSON'
    bad "$tmp/deep2" 'malformed JSON'
    bad "$tmp/deep3" 'not a curfew document'
    ;;
wrong_type)
    generate
    printf '[]' >"$tmp/w1"
    printf '"curfew-record"' >"$tmp/w2"
    printf '42' >"$tmp/w3"
    printf 'null' >"$tmp/w4"
    printf '{"type":"curfew-recordx","version":1}' >"$tmp/w5"
    printf '{"version":1,"pid":1}' >"$tmp/w6"
    printf '{"type":"curfew-hang\\n\\u001b[2J"}' >"$tmp/w7"
    for i in 1 2 3 4 5 6 7; do
        bad "$tmp/w$i" 'not a curfew document'
    done
    # A real JSON file of another kind.
    printf '{"name":"curfew","version":"0.1.0","dependencies":{}}' >"$tmp/w8"
    bad "$tmp/w8" 'no "type"'
    ;;
wrong_version)
    generate
    sed 's/"version":1/"version":2/' "$tmp/record.json" >"$tmp/v2.json"
    bad "$tmp/v2.json" 'unsupported version 2'
    sed 's/"version":1/"version":"1"/' "$tmp/hang.json" >"$tmp/vs.json"
    bad "$tmp/vs.json" 'version: expected an integer'
    sed 's/"version":1/"version":1.0/' "$tmp/state.json" >"$tmp/vf.json"
    bad "$tmp/vf.json" 'version: expected an integer'
    sed 's/"version":1,//' "$tmp/record.json" >"$tmp/vm.json"
    bad "$tmp/vm.json" 'missing "version"'
    ;;
bad_fields)
    generate
    mkdir "$tmp/m"
    pycheck mutate "$tmp/m" "$tmp/record.json" "$tmp/hang.json"
    count=0
    while IFS='	' read -r file expect; do
        if [ $((count % 8)) -eq 0 ]; then
            bad "$tmp/m/$file" "$expect"
        else
            bad1 "$tmp/m/$file" "$expect"
        fi
        count=$((count + 1))
    done <"$tmp/m/list"
    [ "$count" -ge 30 ] || fail "only $count mutants"
    ;;
huge_numbers)
    generate
    mkdir "$tmp/n"
    pycheck numbers "$tmp/n" "$tmp/record.json"
    while IFS='	' read -r file expect; do
        bad1 "$tmp/n/$file" "$expect"
    done <"$tmp/n/list"
    good_all "$tmp/n/extreme-ok.json"
    ;;
weird_names)
    # R4: whatever a name holds, the outputs stay valid JSON and XML.
    pycheck weird "$tmp"
    good_all "$tmp/weird.json"
    run 0 show "$tmp/weird.json"
    has 'new\nline\r\tand tab' 'esc \x1b[31m' '\u0085'
    good_all "$tmp/weird-hang.json"
    ;;
invalid_utf8)
    # Raw invalid UTF-8 and lone surrogates: refused by the strict reader
    # (2), or, if ever accepted, shown with valid outputs.
    printf '{"type":"curfew-record","version":1,"pid":1,"process":"a\377b","clean":true,"exit_after":null,"phases":[],"broken_registrations":[]}' >"$tmp/u1.json"
    printf '{"type":"curfew-record","version":1,"pid":1,"process":"\\udc00","clean":true,"exit_after":null,"phases":[{"name":"p\\ud800","start_ms":0,"end_ms":1,"blockers":[{"name":"\\ud83d","barrier":"p","start_ms":0,"end_ms":1,"result":"ok"}]}],"broken_registrations":[]}' >"$tmp/u2.json"
    printf '{"type":"curfew-record","version":1,"pid":1,"process":"\300\200 overlong","clean":true,"exit_after":null,"phases":[],"broken_registrations":[]}' >"$tmp/u3.json"
    for f in u1 u2 u3; do
        "$tool" show "$tmp/$f.json" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        sanitizer_clean
        case $rc in
        0) good_all "$tmp/$f.json" ;;
        2) bad "$tmp/$f.json" ;;
        *) fail "$f.json: exit status $rc" ;;
        esac
    done
    ;;
children)
    # P6: a child's report inside the parent's.
    generate
    pycheck children "$tmp" "$tmp/hang.json"
    run 0 show "$tmp/with-children.json"
    has 'children (2)' 'child "child <one>"' 'curfew-hang' 'child "child two", pid 7'
    good_all "$tmp/with-children.json"
    run 0 trace "$tmp/with-children.json"
    has '"child <one> (curfew-hang)"'
    # A child's report the tool cannot read is named, not fatal.
    run 0 show "$tmp/deep-children.json"
    has 'unreadable report: children nested more than 8 deep'
    good_all "$tmp/deep-children.json"
    run 0 show "$tmp/bad-child.json"
    has 'unreadable report: unsupported version 9' 'child "odd child", pid 99'
    good_all "$tmp/bad-child.json"
    ;;
*)
    fail "unknown case"
    ;;
esac
echo "tool.$case_name: ok"
exit 0
