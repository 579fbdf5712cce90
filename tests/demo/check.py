#!/usr/bin/env python3
"""Checks one curfew-demo run (tests/demo/check.sh runs the demo).

    check.py CASE TABS DIR OUTPUT [DIR2 OUTPUT2]

CASE is the test case; TABS the --tabs of the run; DIR its --out directory
and OUTPUT what it printed. serial_slower passes the default run first and
the --serial run second.

The demo checks itself (its verification table); these checks look again,
independently, at the files it left: the shutdown record and hang reports
(R1, R2), telemetry.json and the SQLite history.

SPDX-License-Identifier: MIT
"""
import json
import os
import re
import sqlite3
import sys


class Fail(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def verification(output):
    """The verification table: {what: (ok, detail)}."""
    rows = {}
    for line in output.splitlines():
        m = re.match(r"^  (ok|LOST) +(tab-\d+ events|history rows|"
                     r"downloads\.json|settings|live objects) +(.*)$", line)
        if m:
            rows[m.group(2)] = (m.group(1) == "ok", m.group(3))
    return rows


def tab_blockers(record):
    """The browser's blockers for its tabs: {tab name: blocker}."""
    out = {}
    for phase in record["phases"]:
        for b in phase["blockers"]:
            m = re.match(r"^child \d+ \((tab-\d+)\)$", b["name"])
            if m:
                out[m.group(1)] = b
    return out


def check_table(output, tabs, lost=()):
    """Every row is there; the ones named in lost say LOST, the others ok."""
    rows = verification(output)
    names = ["tab-%d events" % i for i in range(1, tabs + 1)] + [
        "history rows", "downloads.json", "settings", "live objects"]
    for name in names:
        expect(name in rows, "no verification row for %s" % name)
        ok, detail = rows[name]
        if name in lost:
            expect(not ok, "%s should be LOST: %s" % (name, detail))
        else:
            expect(ok, "%s is not ok: %s" % (name, detail))
    return rows


def check_history(run, rows):
    """The demo's "N inserted = N rows" against the database itself."""
    m = re.match(r"(\d+) inserted = (\d+) rows", rows["history rows"][1])
    expect(m, "history row unreadable: %s" % rows["history rows"][1])
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(run, "places.sqlite"),
                         uri=True)
    count = db.execute("SELECT count(*) FROM visits").fetchone()[0]
    db.close()
    expect(count == int(m.group(1)) and count > 0,
           "places.sqlite has %d rows, the demo inserted %s" %
           (count, m.group(1)))


def check_telemetry(run, tabs, missing=()):
    tel = load(os.path.join(run, "telemetry.json"))
    seen = {t["name"]: t for t in tel["tabs"]}
    expect(len(seen) == tabs, "telemetry.json lists %d tabs" % len(seen))
    total = 0
    for name, t in seen.items():
        if name in missing:
            expect(t["outcome"] != "reported" and not t["workers"],
                   "%s should have no telemetry: %r" % (name, t))
            continue
        expect(t["outcome"] == "reported", "%s did not report" % name)
        expect(len(t["workers"]) == 2, "%s: not 2 workers" % name)
        expect(sum(w["events"] for w in t["workers"]) == t["events"] > 0,
               "%s: worker counts do not add up" % name)
        expect(t["refused"] == 0, "%s refused events" % name)
        total += t["events"]
    expect(tel["events"] == total, "telemetry.json: wrong total")
    return seen


def check_clean_record(run, tabs):
    record = load(os.path.join(run, "shutdown-record.json"))
    expect(record["type"] == "curfew-record" and record["clean"] is True,
           "the browser's record is not clean")
    names = [p["name"] for p in record["phases"]]
    expect(names[0] == "quit-application" and
           names[-1] == "xpcom-shutdown-threads",
           "unexpected phases: %s" % names)
    children = tab_blockers(record)
    expect(len(children) == tabs, "%d tab blockers" % len(children))
    expect(record.get("children") == [], "a tab reported a hang")
    return record, children


def case_normal(tabs, run, output):
    rows = check_table(output, tabs)
    expect("nothing lost." in output, "no 'nothing lost.'")
    check_history(run, rows)
    check_telemetry(run, tabs)
    record, children = check_clean_record(run, tabs)
    for phase in record["phases"]:
        for b in phase["blockers"]:
            expect(b["result"] == "ok", "blocker %s: %s" % (b["name"],
                                                             b["result"]))
    for name, b in children.items():
        expect(b["barrier"] == "profile-before-change",
               "%s not in profile-before-change" % name)
    # The tabs shut down in parallel (P2): they overlap in time.
    latest_start = max(b["start_ms"] for b in children.values())
    earliest_end = min(b["end_ms"] for b in children.values())
    expect(latest_start < earliest_end, "the tabs did not overlap")
    # Contract L ran in the last two phases: modules, then nothing leaked.
    last = record["phases"][-1]
    expect(any(b["name"] == "module thread-manager" for b in last["blockers"]),
           "no module shut down in xpcom-shutdown-threads")
    expect("leaks" not in record, "leaks in the record")


def case_crash_child(tabs, run, output):
    rows = check_table(output, tabs)
    expect("crashed on purpose" in rows["tab-2 events"][1],
           "tab-2's row: %s" % rows["tab-2 events"][1])
    check_history(run, rows)
    check_telemetry(run, tabs, missing=("tab-2",))
    record, children = check_clean_record(run, tabs)
    # The record says which tab crashed, and how (P4).
    crashed = children["tab-2"]
    expect(crashed["result"] == "error", "tab-2: %s" % crashed["result"])
    expect("signal 6" in crashed["error"] and "SIGABRT" in crashed["error"],
           "tab-2's error: %s" % crashed["error"])
    for name, b in children.items():
        if name != "tab-2":
            expect(b["result"] == "ok", "%s: %s" % (name, b["result"]))
    # And the tab's own record where: in its first phase, never finished.
    own = load(os.path.join(run, "tab-2-record.json"))
    expect(own["clean"] is False, "tab-2's own record says clean")
    expect(own["phases"][0]["name"] == "content-child-will-shutdown" and
           own["phases"][0]["end_ms"] is None,
           "tab-2's record: %s" % own["phases"][0])


def child_report(run, tab):
    """The tab's hang report, as the browser's record keeps it (P6)."""
    record = load(os.path.join(run, "shutdown-record.json"))
    reports = [c for c in record["children"] if c.get("process") == tab]
    expect(len(reports) == 1, "%d reports from %s in the browser's record" %
           (len(reports), tab))
    report = reports[0]
    expect(report["type"] == "curfew-hang", "not a hang report")
    expect(report["phase"] == "content-child-will-shutdown",
           "hung in %s" % report["phase"])
    # The tab exits with status 70 after sending its report (the watchdog's
    # CURFEW_TIMEOUT_EXIT), or, if that takes longer than its force-kill
    # timer (ThreadSanitizer sleeps a second in _exit), is killed (P4).
    blocker = tab_blockers(record)[tab]
    expect((blocker["result"] == "error" and
            "status 70" in blocker["error"]) or blocker["result"] == "timeout",
           "the browser's blocker for %s: %s" % (tab, blocker))
    return report


def check_hung_tab(run, output, tabs):
    rows = check_table(output, tabs, lost=("tab-2 events",))
    check_history(run, rows)
    check_telemetry(run, tabs, missing=("tab-2",))
    expect("a tab's watchdog fired" in output, "no word of the hang")


def case_hang_child(tabs, run, output):
    check_hung_tab(run, output, tabs)
    c = child_report(run, "tab-2")["conditions"]
    expect(len(c) == 1 and c[0]["name"] == "unload documents",
           "conditions: %s" % c)
    expect(c[0]["file"].endswith("tab.c") and c[0]["function"] == "tab_main",
           "registered at %s:%s" % (c[0]["file"], c[0]["function"]))
    expect("onbeforeunload has not returned" in c[0]["status"],
           "status: %s" % c[0]["status"])


def case_hang_worker(tabs, run, output):
    check_hung_tab(run, output, tabs)
    c = child_report(run, "tab-2")["conditions"]
    expect(len(c) == 1 and c[0]["name"] == "tab-2 worker-2",
           "conditions: %s" % c)
    # K5: the strong reference that holds the worker, and where it was
    # taken.
    s = c[0]["status"]
    expect("strong reference" in s and "page script" in s and
           "start_endless_script" in s, "status: %s" % s)


def case_hang_io(tabs, run, output):
    report = load(os.path.join(run, "shutdown-hang.json"))
    expect(report["type"] == "curfew-hang" and report["process"] == "browser",
           "not the browser's hang report")
    expect(report["phase"] == "profile-before-change",
           "hung in %s" % report["phase"])
    c = {x["name"]: x for x in report["conditions"]}
    expect(set(c) == {"places: close database", "places.sqlite queue"},
           "conditions: %s" % sorted(c))
    mine = c["places: close database"]
    expect(mine["file"].endswith("places.c") and
           mine["function"] == "places_start",
           "registered at %s:%s" % (mine["file"], mine["function"]))
    expect("PRAGMA optimize" in mine["status"] and
           "has not returned" in mine["status"], "status: %s" % mine["status"])
    expect("The browser's watchdog fired" in output, "no word of the hang")
    record = load(os.path.join(run, "shutdown-record.json"))
    expect(record["clean"] is False, "the record says clean")


def case_serial_slower(tabs, run, output, run2, output2):
    """The same work, waited for at once or one part after another.

    Compared: profile-before-change, where the tabs and the services are
    waited for (the serial run cuts it in one phase per part), and the
    whole shutdown. The rest of the shutdown is the same either way, and
    under ThreadSanitizer it holds a second of the tabs' _exit."""
    before_change, total = [], []
    for d, out, serial in ((run, output, False), (run2, output2, True)):
        rows = check_table(out, tabs)
        check_history(d, rows)
        check_telemetry(d, tabs)
        record, children = check_clean_record(d, tabs)
        parts = [p for p in record["phases"]
                 if p["name"] == "profile-before-change" or
                 p["name"].startswith("profile-before-change/")]
        if serial:
            expect(len(parts) == tabs + 3, "%d serial parts" % len(parts))
            for name, b in children.items():
                expect(b["barrier"] == "profile-before-change/" + name,
                       "%s waits in %s" % (name, b["barrier"]))
        else:
            expect(len(parts) == 1, "profile-before-change is cut")
        before_change.append(sum(p["end_ms"] - p["start_ms"] for p in parts))
        total.append(max(p["end_ms"] for p in record["phases"]))
        # The same work: every tab unloaded its pages, the same ones.
        for t in range(1, tabs + 1):
            own = load(os.path.join(d, "tab-%d-record.json" % t))
            unload = [b for b in own["phases"][0]["blockers"]
                      if b["name"] == "unload documents"]
            expect(len(unload) == 1 and unload[0]["result"] == "ok" and
                   unload[0]["status"] == "%d pages unloaded" %
                   (2 + t % 3), "tab-%d's unload: %s" % (t, unload))
    print("profile-before-change: default %d ms, serial %d ms; whole "
          "shutdown: default %d ms, serial %d ms" %
          (before_change[0], before_change[1], total[0], total[1]))
    expect(before_change[1] >= before_change[0] * 1.3 and
           before_change[1] - before_change[0] >= 150,
           "serial profile-before-change (%d ms) not clearly longer than "
           "the default one (%d ms)" % (before_change[1], before_change[0]))
    expect(total[1] > total[0], "the serial shutdown was not longer")


def main():
    case, tabs = sys.argv[1], int(sys.argv[2])
    runs = sys.argv[3:]
    args = []
    for i in range(0, len(runs), 2):
        with open(runs[i + 1], encoding="utf-8", errors="replace") as f:
            args += [runs[i], f.read()]
    try:
        globals()["case_" + case](tabs, *args)
    except Fail as e:
        print("check.py %s: %s" % (case, e), file=sys.stderr)
        return 1
    except (KeyError, ValueError, TypeError, OSError) as e:
        print("check.py %s: %s: %s" % (case, type(e).__name__, e),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
