#!/usr/bin/env bash
# The benchmarks of docs/BENCHMARKS.md, as ./dev bench runs them: builds
# curfew-bench (build-bench/, RelWithDebInfo) and the Go and Rust peers
# offline from Debian's packages, runs every subcommand on the fixed sizes,
# writes bench/results/latest.json and rewrites the generated part of
# docs/BENCHMARKS.md. ./dev bench installs the packages first; run alone,
# this script expects them (a peer that cannot be built is reported as
# missing, not faked).
#
# bench/run.sh --tables-only rewrites the tables from the runs recorded in
# bench/results/latest.json without running anything.
#
# Environment: CURFEW_BENCH_RUNS (phase runs per size, default 5),
# CURFEW_BENCH_SMALL=1 (a quick check: small sizes, one run; the doc and
# latest.json are left alone, the results go to build-bench/).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"

bdir=build-bench
runs=${CURFEW_BENCH_RUNS:-5}
small=${CURFEW_BENCH_SMALL:-0}
sizes=(1000 100000 1000000)
threads=2
max_delay_ms=10
seq_blockers=200
procs_children=64
procs_ms=100
io_files=1000
io_bytes=4096
watchdog_ms=1000
other_runs=3
if [ "$small" = 1 ]; then
    runs=1
    sizes=(1000 20000)
    procs_children=8
    io_files=50
    watchdog_ms=200
    other_runs=1
fi

# render: latest.json from the runs ($BENCH_RAW), unless BENCH_TABLES_ONLY=1
# (then from latest.json as it is), and the generated part of the doc.
render() {
    python3 - <<'PY'
import datetime, json, os, statistics

env = os.environ

def prog(r):
    return r.get("peer", "curfew")

def med(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and v >= 0]
    return statistics.median(vals) if vals else None

if env.get("BENCH_TABLES_ONLY") == "1":
    # The tables again from the runs recorded last time.
    with open(env["BENCH_JSON"]) as f:
        doc = json.load(f)
    rows = doc["runs"]
else:
    rows = []
    with open(env["BENCH_RAW"]) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    loads = [r["load"] for r in rows if isinstance(r.get("load"), (int, float))]
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    doc = {
        "generated": now.isoformat(),
        "commit": env["BENCH_COMMIT"],
        "duration_s": int(env["BENCH_ELAPSED"]),
        "machine": {
            "cpu": env["BENCH_CPU"], "cores": int(env["BENCH_CORES"]),
            "kernel": env["BENCH_KERNEL"],
            "memory_gib": round(int(env["BENCH_MEM_KB"] or 0) / 1048576, 1),
            "os": env["BENCH_OS"], "compiler": env["BENCH_CC"],
            "go": env["BENCH_GO"] or None, "rustc": env["BENCH_RUST"] or None,
            "io_filesystem": env["BENCH_FS"],
            "load_min": min(loads) if loads else None,
            "load_max": max(loads) if loads else None,
        },
        "phase_runs": int(env["BENCH_RUNS"]),
        "other_runs": int(env["BENCH_OTHER_RUNS"]),
    }

ok = [r for r in rows if "error" not in r]
failed = [r for r in rows if "error" in r]

# Medians (and the range) per (bench, program, size) over the runs.
summary = {}
spread = {}
groups = {}
for r in ok:
    size = r.get("blockers", r.get("children", r.get("files", r.get("timeout_ms", 0))))
    if r["bench"] == "idle":
        size = 0
    groups.setdefault((r["bench"], prog(r), size), []).append(r)
for (bench, p, size), rs in sorted(groups.items(), key=lambda x: (x[0][0], x[0][1], x[0][2])):
    keys = [k for k, v in rs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("run", "seed", "blockers", "threads", "max_delay_ms")]
    summary.setdefault(bench, {}).setdefault(p, {})[str(size)] = dict(
        {k: med([x.get(k) for x in rs]) for k in keys}, runs=len(rs))
    spread.setdefault(bench, {}).setdefault(p, {})[str(size)] = {
        k: [min(x.get(k) for x in rs if isinstance(x.get(k), (int, float))),
            max(x.get(k) for x in rs if isinstance(x.get(k), (int, float)))]
        for k in keys}

doc["median"] = summary
doc["range"] = spread
doc["failed_runs"] = failed
doc["runs"] = rows
with open(env["BENCH_JSON"], "w") as f:
    json.dump(doc, f, indent=1, sort_keys=False)
    f.write("\n")

machine = doc["machine"]
cores = machine["cores"]
loads = [x for x in (machine.get("load_min"), machine.get("load_max")) if x is not None]
now = datetime.datetime.fromisoformat(doc["generated"])

# ---- the tables.
def g(bench, p, size, key):
    return summary.get(bench, {}).get(p, {}).get(str(size), {}).get(key)

def fmt(v, nd=1):
    if v is None:
        return "—"
    if abs(v) >= 1000 and nd <= 1:
        return f"{v:,.0f}".replace(",", " ")
    return f"{v:.{nd}f}"

def num(n):
    return f"{n:,}".replace(",", " ")

def ratio(a, b):
    if a is None or b is None or b <= 0:
        return "—"
    x = a / b
    return f"{x:,.0f}×".replace(",", " ") if x >= 100 else f"{x:.1f}×"

def yes(b):
    return "met" if b else "**missed**"

phase_sizes = sorted({int(s) for p in summary.get("phase", {}).values() for s in p})
peers = [("go-errgroup", "Go errgroup"), ("rust-tokio-joinset", "Rust tokio JoinSet")]
L = []
A = L.append
A(f"Generated by `./dev bench` on {now.strftime('%Y-%m-%d %H:%M UTC')} from commit "
  f"{doc['commit']}; the run took {doc['duration_s']} s. Medians of "
  f"{doc['phase_runs']} runs per phase size and {doc['other_runs']} of the others; "
  "every run is in `bench/results/latest.json`.")
A("")
A("**Machine.** " + f"{machine['cpu']}, {cores} cores, {machine['memory_gib']} GiB, "
  f"{machine['kernel']} ({machine['os']}); {machine['compiler']}; "
  f"Go {machine['go'] or '(not built)'}; rustc {machine['rustc'] or '(not built)'}; "
  f"files written on {machine['io_filesystem']}.")
A("")
if loads and max(loads) > cores * 0.75:
    A(f"**This machine was shared and loaded during the run:** the 1-minute load average "
      f"was {min(loads):.1f} to {max(loads):.1f} on {cores} cores while the benchmarks ran "
      "(other work on the same machine). Wall-clock times are inflated and noisy; the "
      "ratios measured side by side and the CPU times are the steadier figures.")
else:
    A(f"Load average during the run: {min(loads):.1f} to {max(loads):.1f} on {cores} cores." if loads else "")
A("")
if failed:
    A("**Runs that failed:** " + "; ".join(
        f"{r['bench']} run {r['run']} ({r['error']})" for r in failed) + ".")
    A("")

A("### Phase: N blockers finished from 2 threads, delays U[0, 10] ms")
A("")
seq_n = g("phase", "curfew", phase_sizes[0], "sequential_measured_blockers") if phase_sizes else None
A("Wall-clock time from the start of the wait to its end; overhead = total − the largest delay "
  "drawn. *Floor*: the same threads and delays with one atomic counter instead of curfew. "
  "*Sequential*: one observer after another, each waiting for its own work, measured on "
  f"{fmt(seq_n, 0)} blockers and scaled to N. × = that time ÷ curfew's total.")
A("")
hdr = "| blockers | curfew total (overhead) ms | floor total (overhead) ms | sequential ms | × |"
sep = "|--:|--:|--:|--:|--:|"
for _, name in peers:
    hdr += f" {name} total (overhead) ms | × |"
    sep += "--:|--:|"
A(hdr)
A(sep)
for n in phase_sizes:
    ct = g("phase", "curfew", n, "total_ms")
    row = (f"| {num(n)} | {fmt(ct, 1)} ({fmt(g('phase','curfew',n,'overhead_ms'), 2)}) "
           f"| {fmt(g('phase','curfew',n,'floor_total_ms'),1)} ({fmt(g('phase','curfew',n,'floor_overhead_ms'),2)}) "
           f"| {fmt(g('phase','curfew',n,'sequential_ms'),0)} | {ratio(g('phase','curfew',n,'sequential_ms'), ct)} |")
    for key, _ in peers:
        pt = g("phase", key, n, "total_ms")
        row += f" {fmt(pt,1)} ({fmt(g('phase',key,n,'overhead_ms'),1)}) | {ratio(pt, ct)} |"
    A(row)
A("")
def rng(bench, p, n, key, nd):
    r = spread.get(bench, {}).get(p, {}).get(str(n), {}).get(key)
    return f"{fmt(r[0], nd)}–{fmt(r[1], nd)}" if r else "—"

A("Range over the runs of the overhead, ms: " + "; ".join(
    f"{num(n)} blockers: curfew {rng('phase','curfew',n,'overhead_ms',2)}, "
    f"floor {rng('phase','curfew',n,'floor_overhead_ms',2)}, "
    f"Go {rng('phase','go-errgroup',n,'overhead_ms',1)}, "
    f"Rust {rng('phase','rust-tokio-joinset',n,'overhead_ms',1)}" for n in phase_sizes) + ".")
A("")
A("CPU time of the whole process during the wait (all threads), ms — the cost that does not "
  "depend on what else the machine runs:")
A("")
hdr = "| blockers | curfew | floor |"
sep = "|--:|--:|--:|"
for _, name in peers:
    hdr += f" {name} | × |"
    sep += "--:|--:|"
A(hdr)
A(sep)
for n in phase_sizes:
    cc = g("phase", "curfew", n, "cpu_ms")
    row = f"| {num(n)} | {fmt(cc,1)} | {fmt(g('phase','curfew',n,'floor_cpu_ms'),1)} |"
    for key, _ in peers:
        pc = g("phase", key, n, "cpu_ms")
        row += f" {fmt(pc,1)} | {ratio(pc, cc)} |"
    A(row)
A("")
A("Per blocker. *add*: `curfew_add_blocker` alone, one thread, names made before the timed "
  "loop (the library's copy of the name is included), wall and CPU. *done*: "
  "`curfew_blocker_done` alone, one thread, while the phase waits, in the order the phase "
  "finishes them (by due time, random with respect to adding) and in the order of adding. "
  "*begin+trigger*: `curfew_begin` and the dispatch that runs every trigger. *memory*: resident "
  "memory (VmRSS) growth over the N adds ÷ N, the names' own bytes (strlen + 1) left out. *peak RSS*: VmHWM "
  "growth ÷ N (names included for curfew; the peers have no names). *register*: `g.Go` / "
  "`JoinSet::spawn` while the tasks already spawned run and wait on the start signal.")
A("")
A("| blockers | add ns (CPU) | done ns, random order (CPU) | done ns, add order | begin+trigger ns | memory B | peak RSS B | Go peak RSS B | Rust peak RSS B | Go register ns | Rust register ns | wake-ups |")
A("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
for n in phase_sizes:
    A((f"| {num(n)} | {fmt(g('phase','curfew',n,'add_ns'),0)} ({fmt(g('phase','curfew',n,'add_cpu_ns'),0)}) "
       f"| {fmt(g('phase','curfew',n,'done_ns'),0)} ({fmt(g('phase','curfew',n,'done_cpu_ns'),0)}) "
       f"| {fmt(g('phase','curfew',n,'done_in_add_order_ns'),0)} "
       f"| {fmt(g('phase','curfew',n,'begin_and_trigger_ns'),0)} "
       f"| {fmt(g('phase','curfew',n,'bytes_per_blocker'),0)} "
       f"| {fmt(g('phase','curfew',n,'peak_rss_bytes_per_blocker'),0)} "
       f"| {fmt(g('phase','go-errgroup',n,'peak_rss_bytes_per_task'),0)} "
       f"| {fmt(g('phase','rust-tokio-joinset',n,'peak_rss_bytes_per_task'),0)} "
       f"| {fmt(g('phase','go-errgroup',n,'register_ns'),0)} "
       f"| {fmt(g('phase','rust-tokio-joinset',n,'register_ns'),0)} "
       f"| {fmt(g('phase','curfew',n,'wakeups'),0)} |"))
A("")

A("### Processes, durable writes, watchdog, idle")
A("")
A("| benchmark | curfew | the other way | × | range over the runs |")
A("|---|--:|--:|--:|---|")
pr = summary.get("procs", {}).get("curfew", {})
for size, v in sorted(pr.items(), key=lambda x: int(x[0])):
    A(f"| procs: {num(int(size))} children × {fmt(v.get('child_ms'),0)} ms | {fmt(v.get('total_ms'),1)} ms "
      f"| serial {fmt(v.get('serial_ms'),1)} ms | {fmt(v.get('ratio'),1)}× "
      f"| {rng('procs','curfew',size,'ratio',1)}× |")
io = summary.get("io", {}).get("curfew", {})
for size, v in sorted(io.items(), key=lambda x: int(x[0])):
    A(f"| io: {num(int(size))} atomic writes × {fmt(v.get('bytes'),0)} B, {fmt(v.get('io_threads'),0)} I/O threads "
      f"| {fmt(v.get('total_ms'),1)} ms | naive loop {fmt(v.get('naive_ms'),1)} ms | {fmt(v.get('ratio'),1)}× "
      f"| {rng('io','curfew',size,'ratio',1)}× |")
wd = summary.get("watchdog", {}).get("curfew", {})
for size, v in sorted(wd.items(), key=lambda x: int(x[0])):
    A(f"| watchdog: crash_after_ms {num(int(size))} | report after {fmt(v.get('reported_after_ms'),1)} ms "
      f"(late {fmt(v.get('late_ms'),1)} ms); exit after {fmt(v.get('exited_after_ms'),1)} ms | — | — "
      f"| late {rng('watchdog','curfew',size,'late_ms',1)} ms |")
idle = summary.get("idle", {}).get("curfew", {}).get("0", {})
if idle:
    A(f"| idle: before `curfew_begin`, 1 000 blockers, {fmt(idle.get('watched_s'),1)} s watched "
      f"| {fmt(idle.get('threads_before_begin'),0)} threads, {fmt(idle.get('wakeups_per_s_before_begin'),2)} wake-ups/s | — | — | |")
A("")

A("### Targets (ARCHITECTURE.md, \"Performance\")")
A("")
A("| target | measured (median unless said) | |")
A("|---|--:|---|")
def tgt(label, val, good, unit="", nd=1):
    if val is None:
        A(f"| {label} | not measured | **not measured** |")
    else:
        A(f"| {label} | {fmt(val, nd)}{unit} | {yes(good(val))} |")
big = 1000000 if 1000000 in phase_sizes else (phase_sizes[-1] if phase_sizes else None)
mid = 100000 if 100000 in phase_sizes else big
tgt(f"phase overhead ≤ 1 ms at {num(mid)} blockers", g("phase", "curfew", mid, "overhead_ms"), lambda v: v <= 1, " ms", 2)
def tgt_all(label, key, good, unit, nd=0):
    vals = [g("phase", "curfew", n, key) for n in phase_sizes]
    if not vals or any(v is None for v in vals):
        A(f"| {label} | not measured | **not measured** |")
        return
    shown = " / ".join(fmt(v, nd) for v in vals)
    A(f"| {label} | {shown}{unit} | {yes(all(good(v) for v in vals))} |")
sizes_label = " / ".join(num(n) for n in phase_sizes)
tgt_all(f"add < 200 ns (at {sizes_label})", "add_ns", lambda v: v < 200, " ns")
tgt_all(f"done < 200 ns, random order (at {sizes_label})", "done_ns", lambda v: v < 200, " ns")
tgt_all(f"< 128 bytes per blocker plus its name (at {sizes_label})", "bytes_per_blocker", lambda v: v < 128, " B")
pr_sizes = sorted(summary.get("procs", {}).get("curfew", {}), key=int)
pr_n = 64 if "64" in pr_sizes else (int(pr_sizes[-1]) if pr_sizes else 64)
tgt(f"procs: {pr_n} × 100 ms children, ratio ≥ 20", g("procs", "curfew", pr_n, "ratio"), lambda v: v >= 20, "×", 1)
wd_sizes = sorted(summary.get("watchdog", {}).get("curfew", {}), key=int)
tgt("watchdog: report within deadline + 50 ms (worst run)",
    spread["watchdog"]["curfew"][wd_sizes[0]]["late_ms"][1] if wd_sizes else None,
    lambda v: v <= 50, " ms late", 1)
tgt("idle: zero threads before begin", idle.get("threads_before_begin") if idle else None, lambda v: v == 0, "", 0)
tgt("idle: zero wake-ups before begin", idle.get("wakeups_per_s_before_begin") if idle else None, lambda v: v == 0, "/s", 2)
A("")
A("Aims beyond the first targets:")
A("")
A("| aim | measured (median) | |")
A("|---|--:|---|")
tgt(f"phase overhead ≤ 1 ms at {num(big)} blockers", g("phase", "curfew", big, "overhead_ms"), lambda v: v <= 1, " ms", 2)
tgt_all(f"add ≤ 50 ns (at {sizes_label})", "add_ns", lambda v: v <= 50, " ns")
tgt_all(f"≤ 64 bytes per blocker (at {sizes_label})", "bytes_per_blocker", lambda v: v <= 64, " B")
generated = "\n".join(L).rstrip() + "\n"

begin = "<!-- BEGIN GENERATED BY ./dev bench: do not edit by hand -->"
end = "<!-- END GENERATED BY ./dev bench -->"
path = env["BENCH_DOC"]
try:
    with open(path) as f:
        text = f.read()
except FileNotFoundError:
    text = "# Benchmarks\n\n" + begin + "\n" + end + "\n"
if begin not in text or end not in text:
    text = text.rstrip() + "\n\n" + begin + "\n" + end + "\n"
pre = text[: text.index(begin) + len(begin)]
post = text[text.index(end):]
with open(path, "w") as f:
    f.write(pre + "\n" + generated + post)
print(f"wrote {env['BENCH_JSON']} and the tables of {path}")
PY
}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
t_start=$(date +%s)

if [ "${1:-}" = --tables-only ]; then
    # The tables again from bench/results/latest.json, nothing run.
    export BENCH_TABLES_ONLY=1 BENCH_JSON=bench/results/latest.json
    export BENCH_DOC=docs/BENCHMARKS.md
    render
    exit 0
elif [ -n "${1:-}" ]; then
    echo "usage: bench/run.sh [--tables-only]" >&2
    exit 2
fi

mkdir -p "$bdir/peers"
log=$bdir/bench.log
: >"$log"

say "build: curfew-bench ($bdir, RelWithDebInfo)"
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCURFEW_WERROR=ON -DBUILD_TESTING=OFF >/dev/null
ninja -C "$bdir" curfew-bench >/dev/null
bench=$top/$bdir/curfew-bench

# ---- peers, offline, from Debian's packages only.
go_peer=""
go_version=""
if command -v go >/dev/null 2>&1 &&
    [ -d /usr/share/gocode/src/golang.org/x/sync/errgroup ]; then
    say "build: Go peer (errgroup from golang-golang-x-sync-dev)"
    if (cd bench/peers/go &&
        GOPROXY=off GOFLAGS=-mod=mod GO111MODULE=on GOTOOLCHAIN=local \
            GOPATH="$top/$bdir/peers/gopath" GOCACHE="$top/$bdir/peers/gocache" \
            go build -o "$top/$bdir/peers/go-peer" .) >>"$log" 2>&1; then
        go_peer=$top/$bdir/peers/go-peer
        go_version=$(go version | awk '{print $3}')
    else
        echo "Go peer did not build (see $log)" >&2
    fi
else
    echo "Go peer skipped: go or golang-golang-x-sync-dev missing" >&2
fi

rust_peer=""
rust_version=""
cargo_bin=""
rustc_bin=""
# Debian's cargo and rustc first: the peer is built from Debian packages.
if [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ]; then
    cargo_bin=/usr/bin/cargo
    rustc_bin=/usr/bin/rustc
elif command -v cargo >/dev/null 2>&1; then
    cargo_bin=$(command -v cargo)
    rustc_bin=$(command -v rustc || true)
fi
if [ -n "$cargo_bin" ] && [ -d /usr/share/cargo/registry ]; then
    say "build: Rust peer (tokio from Debian's cargo registry)"
    rm -rf "$bdir/peers/rust-src"
    cp -r bench/peers/rust "$bdir/peers/rust-src"
    if (cd "$bdir/peers/rust-src" &&
        RUSTC=$rustc_bin CARGO_HOME="$top/$bdir/peers/cargo-home" \
            "$cargo_bin" build --release --offline \
            --target-dir "$top/$bdir/peers/rust-target") >>"$log" 2>&1; then
        rust_peer=$top/$bdir/peers/rust-target/release/curfew-bench-peer
        rust_version=$("$rustc_bin" --version | awk '{print $2}')
    else
        echo "Rust peer did not build (see $log)" >&2
    fi
else
    echo "Rust peer skipped: cargo or Debian's cargo registry missing" >&2
fi

# ---- runs: one JSON line each in $raw, with the run number and the load.
raw=$bdir/results.jsonl
: >"$raw"
loadavg() { cut -d' ' -f1 /proc/loadavg; }

# record KIND RUN CMD...: runs CMD (5 minutes at most), appends its JSON
# line with "run" and "load" added, or an error line.
record() {
    local kind=$1 run=$2 load out rc=0
    shift 2
    load=$(loadavg)
    out=$(timeout 300 "$@" 2>>"$log") || rc=$?
    out=$(printf '%s\n' "$out" | grep '^{' | tail -n 1 || true)
    if [ "$rc" -ne 0 ] || [ -z "$out" ]; then
        echo "  $kind run $run FAILED (exit $rc; see $log)" >&2
        printf '{"bench":"%s","run":%d,"load":%s,"error":"exit %d"}\n' \
            "$kind" "$run" "$load" "$rc" >>"$raw"
        return 0
    fi
    printf '%s\n' "${out%\}},\"run\":$run,\"load\":$load}" >>"$raw"
}

for ((r = 1; r <= runs; r++)); do
    for n in "${sizes[@]}"; do
        say "phase: $n blockers, run $r of $runs"
        args=(--blockers "$n" --threads "$threads" --max-delay-ms "$max_delay_ms")
        # The order rotates from run to run, so no program always runs
        # right after another one's memory churn.
        progs=(curfew go rust)
        for ((k = 0; k < 3; k++)); do
            p=${progs[$(((k + r) % 3))]}
            case $p in
            curfew)
                record phase "$r" "$bench" phase "${args[@]}" --seq-blockers "$seq_blockers"
                ;;
            go)
                if [ -n "$go_peer" ]; then record phase "$r" "$go_peer" "${args[@]}"; fi
                ;;
            rust)
                if [ -n "$rust_peer" ]; then record phase "$r" "$rust_peer" "${args[@]}"; fi
                ;;
            esac
        done
    done
done

for ((r = 1; r <= other_runs; r++)); do
    say "procs: $procs_children children x $procs_ms ms, run $r of $other_runs"
    record procs "$r" "$bench" procs --children "$procs_children" --child-ms "$procs_ms"
    order=curfew-first
    if ((r % 2 == 0)); then order=naive-first; fi
    say "io: $io_files files x $io_bytes bytes ($order), run $r of $other_runs"
    record io "$r" "$bench" io --files "$io_files" --bytes "$io_bytes" \
        --dir "$top/$bdir" --order "$order"
    say "watchdog: crash_after_ms $watchdog_ms, run $r of $other_runs"
    record watchdog "$r" "$bench" watchdog --timeout-ms "$watchdog_ms" --dir "$top/$bdir"
done
say "idle: 1 s before begin"
record idle 1 "$bench" idle --seconds 1

t_end=$(date +%s)
elapsed=$((t_end - t_start))

# ---- latest.json and the generated part of docs/BENCHMARKS.md.
out_json=bench/results/latest.json
out_doc=docs/BENCHMARKS.md
if [ "$small" = 1 ]; then
    out_json=$bdir/latest.json
    out_doc=$bdir/BENCHMARKS.md
    [ -f "$out_doc" ] || cp docs/BENCHMARKS.md "$out_doc" 2>/dev/null || true
fi
mkdir -p "$(dirname "$out_json")"

export BENCH_RAW=$raw BENCH_JSON=$out_json BENCH_DOC=$out_doc
export BENCH_ELAPSED=$elapsed BENCH_RUNS=$runs BENCH_OTHER_RUNS=$other_runs
export BENCH_GO="$go_version" BENCH_RUST="$rust_version"
export BENCH_CC
BENCH_CC=$(cc --version | head -n 1)
export BENCH_FS
BENCH_FS=$(df --output=fstype "$bdir" 2>/dev/null | tail -n 1 || echo unknown)
export BENCH_CPU
BENCH_CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
export BENCH_CORES
BENCH_CORES=$(nproc)
export BENCH_KERNEL
BENCH_KERNEL=$(uname -sr)
export BENCH_MEM_KB
BENCH_MEM_KB=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)
export BENCH_OS
BENCH_OS=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -s)
export BENCH_COMMIT
BENCH_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src include 2>/dev/null)" ]; then
    BENCH_COMMIT="$BENCH_COMMIT (with uncommitted changes to src/ or include/)"
fi

render

say "done in ${elapsed} s: $out_json, $out_doc"
