#!/usr/bin/env python3
"""Checks and inputs for the curfew-report tests (tests/tool/run.sh).

  check.py trace OUT DOC      OUT is trace-event JSON for the document DOC
  check.py svg OUT DOC        OUT is a well-formed SVG 1.1 showing DOC
  check.py width OUT COLS     no timeline line of OUT is wider than COLS and
                              OUT holds no raw control character
  check.py mutate DIR REC HANG  writes wrongly typed variants of the record
                              and the hang report into DIR, and DIR/list
                              ("file<TAB>expected words" a line)
  check.py numbers DIR REC    the same for huge and odd numbers
  check.py weird DIR          a record whose names hold quotes, newlines,
                              control characters, "<svg>&", ... (R4)
  check.py children DIR HANG  a hang report with a child's report (P6),
                              and one with children nested too deep

Several checks may run at once, separated by "+".

Exit status 0 when the check passes; a message on stderr otherwise.

SPDX-License-Identifier: MIT
"""
import copy
import json
import os
import sys
import xml.etree.ElementTree as ET


def fail(msg):
    sys.stderr.write("check.py: FAIL: %s\n" % msg)
    sys.exit(1)


def clean(s):
    """A string as the tool keeps it: NUL and lone surrogates become
    U+FFFD."""
    out = []
    for ch in s:
        o = ord(ch)
        if o == 0 or 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def load_doc(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8", "surrogatepass"))


def shown_names(doc):
    """Names the timeline must show: (phase names, blocker names)."""
    phases, blockers = [], []
    if doc["type"] == "curfew-record":
        for p in doc["phases"]:
            started = p["start_ms"] is not None or p["end_ms"] is not None
            if started:
                phases.append(p["name"])
            for b in p["blockers"]:
                if started or b["start_ms"] is not None or \
                        b["end_ms"] is not None:
                    blockers.append(b["name"])
    else:
        phases = [p["name"] for p in doc["phases"]]
        if doc["conditions"] and doc["phase"] is not None:
            phases.append(doc["phase"])
        blockers = [c["name"] for c in doc["conditions"]]
    return [clean(x) for x in phases], [clean(x) for x in blockers]


# ---- trace (R3) -------------------------------------------------------------

def check_trace(out, docpath):
    with open(out, "rb") as f:
        raw = f.read()
    try:
        trace = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        fail("trace output is not JSON: %s" % e)
    if not isinstance(trace, dict) or not isinstance(
            trace.get("traceEvents"), list):
        fail("no traceEvents array")
    events = trace["traceEvents"]
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            fail("event %d is not an object" % i)
        for key, types in (("name", str), ("ph", str), ("ts", (int, float)),
                           ("pid", int), ("tid", int)):
            if key not in ev or not isinstance(ev[key], types) or \
                    isinstance(ev[key], bool):
                fail("event %d: %r missing or of the wrong type: %r" %
                     (i, key, ev))
        if ev["ph"] == "X":
            d = ev.get("dur")
            if not isinstance(d, (int, float)) or isinstance(d, bool) or d < 0:
                fail("event %d: X event with a bad dur: %r" % (i, ev))
            if ev["ts"] < 0:
                fail("event %d: negative ts" % i)
    metas = [e for e in events if e["ph"] == "M"]
    if not any(e["name"] == "process_name" for e in metas):
        fail("no process_name metadata event")
    named = {(e["pid"], e["tid"]) for e in metas if e["name"] == "thread_name"}
    xs = [e for e in events if e["ph"] == "X"]
    for e in xs:
        if (e["pid"], e["tid"]) not in named:
            fail("X event on a track without a thread_name: %r" % e)

    # Complete events on one track nest or follow each other (a viewer
    # cannot draw partly overlapping slices on one thread).
    tracks = {}
    for e in xs:
        tracks.setdefault((e["pid"], e["tid"]), []).append(e)
    for key, evs in tracks.items():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in evs:
            while stack and stack[-1] <= e["ts"]:
                stack.pop()
            if stack and stack[-1] < e["ts"] + e["dur"]:
                fail("track %r: %r overlaps its neighbour partly" %
                     (key, e["name"]))
            stack.append(e["ts"] + e["dur"])

    doc = load_doc(docpath)
    phases, blockers = shown_names(doc)
    pid = doc["pid"] if 0 < doc["pid"] <= 2**31 - 1 else 1
    mine = [e for e in xs if e["pid"] == pid]
    phase_events = [e["name"] for e in mine if e.get("cat") == "phase"]
    blocker_events = [e["name"] for e in mine if e.get("cat") == "blocker"]
    for n in phases:
        if n not in phase_events:
            fail("phase %r missing from the trace (have %r)" %
                 (n, phase_events))
    for n in blockers:
        if n not in blocker_events:
            fail("blocker %r missing from the trace (have %r)" %
                 (n, blocker_events))

    # Pending blockers run up to the document's end.
    if doc["type"] == "curfew-record":
        end = max([doc.get("elapsed_ms") or 0] +
                  [t for p in doc["phases"] for t in
                   [p["start_ms"], p["end_ms"]] +
                   [x for b in p["blockers"]
                    for x in (b["start_ms"], b["end_ms"])]
                   if t is not None])
        for e in mine:
            if e.get("cat") == "blocker" and \
                    e["args"].get("result") == "pending":
                if e["ts"] + e["dur"] != end * 1000:
                    fail("pending blocker %r ends at %r, not at %r" %
                         (e["name"], e["ts"] + e["dur"], end * 1000))
    print("trace ok: %d events, %d complete" % (len(events), len(xs)))


# ---- svg (R3) ---------------------------------------------------------------

def visible(s):
    """How the SVG shows a name: control characters escaped."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif 0x80 <= o < 0xA0 or o in (0xFFFE, 0xFFFF):
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    return "".join(out)


def check_svg(out, docpath):
    try:
        tree = ET.parse(out)
    except ET.ParseError as e:
        fail("SVG is not well-formed XML: %s" % e)
    root = tree.getroot()
    if root.tag != "{http://www.w3.org/2000/svg}svg":
        fail("root element is %r" % root.tag)
    if root.get("version") != "1.1":
        fail("not SVG 1.1")
    for attr in ("width", "height"):
        if float(root.get(attr, "0")) <= 0:
            fail("no %s" % attr)
    text = "".join(root.itertext())
    doc = load_doc(docpath)
    phases, blockers = shown_names(doc)
    for n in phases + blockers:
        if visible(n) not in text:
            fail("%r missing from the SVG text" % n)
    print("svg ok: %d elements" % sum(1 for _ in root.iter()))


# ---- show -------------------------------------------------------------------

def check_width(out, cols):
    cols = int(cols)
    with open(out, "rb") as f:
        data = f.read()
    for b in data:
        if (b < 0x20 and b not in (0x0A,)) or b == 0x7F:
            fail("raw control byte 0x%02x in the output" % b)
    for line in data.decode("utf-8").split("\n"):
        if "|" in line and len(line) > cols:
            fail("line wider than %d: %r" % (cols, line))
    print("width ok")


# ---- inputs -----------------------------------------------------------------

def write(path, doc):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)


def mutate(d, recpath, hangpath):
    rec = load_doc(recpath)
    hang = load_doc(hangpath)
    cases = []

    def add(name, base, fn, expect):
        doc = copy.deepcopy(base)
        fn(doc)
        write(os.path.join(d, name + ".json"), doc)
        cases.append((name + ".json", expect))

    def setk(path, value):
        def fn(doc):
            o = doc
            for k in path[:-1]:
                o = o[k]
            o[path[-1]] = value
        return fn

    def delk(path):
        def fn(doc):
            o = doc
            for k in path[:-1]:
                o = o[k]
            del o[path[-1]]
        return fn

    add("pid-string", rec, setk(["pid"], "12"), "pid: expected an integer")
    add("process-number", rec, setk(["process"], 5), "process: expected")
    add("clean-string", rec, setk(["clean"], "yes"), "clean: expected true")
    add("clean-missing", rec, delk(["clean"]), 'missing "clean"')
    add("exit-after-number", rec, setk(["exit_after"], 3), "exit_after")
    add("phases-object", rec, setk(["phases"], {}),
        "phases: expected an array, got an object")
    add("phases-missing", rec, delk(["phases"]), 'missing "phases"')
    add("phase-not-object", rec, setk(["phases", 0], "drain"),
        "phases[0]: expected an object, got a string")
    add("phase-name-null", rec, setk(["phases", 1, "name"], None),
        "phases[1].name: expected a string, got null")
    add("phase-start-string", rec, setk(["phases", 1, "start_ms"], "5"),
        "phases[1].start_ms: expected an integer or null")
    add("phase-end-float", rec, setk(["phases", 1, "end_ms"], 1.5),
        "phases[1].end_ms: expected an integer or null")
    add("phase-end-missing", rec, delk(["phases", 1, "end_ms"]),
        'phases[1]: missing "end_ms"')
    add("blockers-missing", rec, delk(["phases", 0, "blockers"]),
        'phases[0]: missing "blockers"')
    add("blockers-string", rec, setk(["phases", 0, "blockers"], "x"),
        "phases[0].blockers: expected an array")
    add("blocker-array", rec, setk(["phases", 0, "blockers", 0], []),
        "phases[0].blockers[0]: expected an object")
    add("blocker-name-number", rec,
        setk(["phases", 0, "blockers", 0, "name"], 7),
        "phases[0].blockers[0].name: expected a string, got a number")
    add("blocker-barrier-missing", rec,
        delk(["phases", 0, "blockers", 1, "barrier"]),
        'phases[0].blockers[1]: missing "barrier"')
    add("blocker-result-bogus", rec,
        setk(["phases", 0, "blockers", 0, "result"], "bogus\n\"x"),
        "phases[0].blockers[0].result: expected")
    add("blocker-result-number", rec,
        setk(["phases", 0, "blockers", 0, "result"], 1),
        "phases[0].blockers[0].result: expected a string")
    add("blocker-end-bool", rec,
        setk(["phases", 0, "blockers", 0, "end_ms"], True),
        "phases[0].blockers[0].end_ms: expected an integer or null, "
        "got a boolean")
    add("blocker-error-number", rec,
        setk(["phases", 2, "blockers", 0, "error"], 5),
        "phases[2].blockers[0].error")
    add("blocker-status-object", rec,
        setk(["phases", 0, "blockers", 0, "status"], {}),
        "phases[0].blockers[0].status")
    add("broken-missing", rec, delk(["broken_registrations"]),
        'missing "broken_registrations"')
    add("broken-line-string", rec,
        setk(["broken_registrations", 0, "line"], "137"),
        "broken_registrations[0].line: expected an integer")
    add("broken-name-missing", rec,
        delk(["broken_registrations", 1, "name"]),
        'broken_registrations[1]: missing "name"')
    add("children-object", rec, setk(["children"], {"a": 1}),
        "children: expected an array")
    add("elapsed-string", rec, setk(["elapsed_ms"], "1"), "elapsed_ms")

    add("hang-phase-number", hang, setk(["phase"], 1), "phase: expected")
    add("hang-path-object", hang, setk(["barrier_path"], {}),
        "barrier_path: expected an array")
    add("hang-path-item", hang, setk(["barrier_path", 1], 5),
        "barrier_path[1]: expected a string, got a number")
    add("hang-elapsed-null", hang, setk(["elapsed_ms"], None),
        "elapsed_ms: expected an integer, got null")
    add("hang-timeout-string", hang, setk(["timeout_ms"], "150"),
        "timeout_ms: expected an integer or null")
    add("hang-conditions-missing", hang, delk(["conditions"]),
        'missing "conditions"')
    add("hang-condition-age", hang, setk(["conditions", 0, "age_ms"], "old"),
        "conditions[0].age_ms: expected an integer")
    add("hang-condition-line", hang, delk(["conditions", 1, "line"]),
        'conditions[1]: missing "line"')
    add("hang-condition-file", hang, setk(["conditions", 0, "file"], []),
        "conditions[0].file: expected a string or null, got an array")
    add("hang-condition-barrier", hang,
        delk(["conditions", 0, "barrier"]), 'conditions[0]: missing "barrier"')
    add("hang-phases-duration", hang,
        setk(["phases", 0, "duration_ms"], None),
        "phases[0].duration_ms: expected an integer, got null")
    add("hang-children-missing", hang, delk(["children"]),
        'missing "children"')
    add("hang-child-string", hang, setk(["children"], ["x"]),
        "children[0]: expected an object, got a string")
    add("type-number", rec, setk(["type"], 1),
        "type: expected a string, got a number")

    with open(os.path.join(d, "list"), "w") as f:
        for name, expect in cases:
            f.write("%s\t%s\n" % (name, expect))


def numbers(d, recpath):
    rec = load_doc(recpath)
    cases = []

    def add(name, key, num, expect):
        """The record with one number replaced by num, written as is."""
        doc = copy.deepcopy(rec)
        if key == "start_ms":
            doc["phases"][0]["start_ms"] = 987654321987
        else:
            doc[key] = 987654321987
        body = json.dumps(doc).replace("987654321987", num, 1)
        with open(os.path.join(d, name + ".json"), "w") as f:
            f.write(body)
        cases.append((name + ".json", expect))

    for name, num, expect in (
            ("start-1e400", "1e400", "out of range"),
            ("start-big-int", "99999999999999999999999", "start_ms"),
            ("start-over-limit", "1000000000001", "out of range"),
            ("start-negative-huge", "-1e30", "start_ms"),
            ("start-int64-min", "-9223372036854775808", "out of range"),
            ("start-exp", "1E3", "start_ms"),
            ("start-minus-zero-frac", "-0.0", "start_ms")):
        add(name, "start_ms", num, expect)
    add("version-huge", "version", "1e999", "out of range")
    add("version-big", "version", "18446744073709551617", "version")
    add("pid-float", "pid", "1.5", "pid")
    with open(os.path.join(d, "list"), "w") as f:
        for name, expect in cases:
            f.write("%s\t%s\n" % (name, expect))
    # Valid and extreme: the trace must still be right.
    ok = copy.deepcopy(rec)
    ok["pid"] = 9223372036854775807
    ok["elapsed_ms"] = 1000000000000
    write(os.path.join(d, "extreme-ok.json"), ok)


WEIRD = [
    'quote " and \\ backslash',
    "new\nline\r\tand tab",
    "nul \u0000 byte",
    "esc \u001b[31m red \u0007 bell \u007f del",
    "<svg>&amp; <script>alert(1)</script> ]]> -->",
    "c1 \u0085 \u009b control",
    "line sep \u2028 para sep \u2029",
    "emoji \U0001F680 and \u00e9\u0301",
    "nonchar \ufffe \uffff",
    "apos ' and \"quotes\"",
    "x" * 300,
]


def weird(d):
    phases = []
    t = 0
    for i, name in enumerate(WEIRD):
        blockers = [{"name": name, "barrier": name, "start_ms": t,
                     "end_ms": t + 5, "result": "ok", "status": name},
                    {"name": name + " (failed)", "barrier": name,
                     "start_ms": t, "end_ms": t + 3, "result": "error",
                     "error": name, "code": -5}]
        phases.append({"name": "%d %s" % (i, name), "start_ms": t,
                       "end_ms": t + 5, "blockers": blockers})
        t += 6
    rec = {"type": "curfew-record", "version": 1, "pid": 42,
           "process": WEIRD[4], "clean": True, "exit_after": None,
           "elapsed_ms": t, "phases": phases,
           "broken_registrations": [
               {"name": n, "error": n, "code": -22, "barrier": n, "file": n,
                "line": 1, "function": n} for n in WEIRD],
           "children": []}
    write(os.path.join(d, "weird.json"), rec)
    hang = {"type": "curfew-hang", "version": 1, "pid": 43,
            "process": WEIRD[1], "phase": WEIRD[0],
            "barrier_path": [WEIRD[0], WEIRD[4]], "elapsed_ms": 10,
            "timeout_ms": 5,
            "conditions": [{"name": n, "status": n, "file": n, "line": 3,
                            "function": n, "age_ms": 7, "barrier": WEIRD[4]}
                           for n in WEIRD],
            "broken_registrations": [], "phases": [], "children": []}
    write(os.path.join(d, "weird-hang.json"), hang)


def children(d, hangpath):
    hang = load_doc(hangpath)
    child = copy.deepcopy(hang)
    child["pid"] = hang["pid"] + 1
    child["process"] = "child <one>"
    parent = copy.deepcopy(hang)
    parent["children"] = [child, {"process": "child two", "pid": 7}]
    write(os.path.join(d, "with-children.json"), parent)
    deep = copy.deepcopy(hang)
    cur = deep
    for i in range(12):
        c = copy.deepcopy(hang)
        c["pid"] = 1000 + i
        cur["children"] = [c]
        cur = c
    write(os.path.join(d, "deep-children.json"), deep)
    odd = copy.deepcopy(hang)
    odd["children"] = [{"type": "curfew-hang", "version": 9,
                        "process": "odd child", "pid": 99}]
    odd["leaks"] = [{"module": "db", "type": "Conn", "count": 2}]
    write(os.path.join(d, "bad-child.json"), odd)


def main(argv):
    """Several checks in one run (python starts slowly on a loaded
    machine): "check.py trace A B + svg C D + width E 80"."""
    if len(argv) < 2:
        fail(__doc__)
    args = argv[1:]
    while "+" in args:
        i = args.index("+")
        one([argv[0]] + args[:i])
        args = args[i + 1:]
    one([argv[0]] + args)


def one(argv):
    cmd = argv[1]
    if cmd == "trace" and len(argv) == 4:
        check_trace(argv[2], argv[3])
    elif cmd == "svg" and len(argv) == 4:
        check_svg(argv[2], argv[3])
    elif cmd == "width" and len(argv) == 4:
        check_width(argv[2], argv[3])
    elif cmd == "mutate" and len(argv) == 5:
        mutate(argv[2], argv[3], argv[4])
    elif cmd == "numbers" and len(argv) == 4:
        numbers(argv[2], argv[3])
    elif cmd == "weird" and len(argv) == 3:
        weird(argv[2])
    elif cmd == "children" and len(argv) == 4:
        children(argv[2], argv[3])
    else:
        fail("bad arguments: %r" % argv[1:])


if __name__ == "__main__":
    main(sys.argv)
