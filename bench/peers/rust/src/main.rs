// The Rust peer of curfew-bench phase: N tokio tasks in a JoinSet, each
// finishing delay[i] after the wait starts, on a multi-thread runtime with
// T worker threads. The delays come from the same generator and seed as
// curfew-bench, so both wait for the same work.
//
// Registration (JoinSet::spawn) happens before the clock starts, as
// curfew's adds happen before curfew_begin: each task first waits for a
// tokio-util CancellationToken (the "shutdown began" signal), then sleeps
// until its due time. The clock starts once every task has reached that
// wait; total_ms runs from cancelling the token to the last join_next().
// register_ns is the spawn loop alone, while the tasks already spawned run
// on the worker threads.
//
// tokio-util's TaskTracker would be the closer peer, but it appeared in
// tokio-util 0.7.9 and Debian ships 0.7.3; JoinSet waits for the same set
// of tasks.
//
// SPDX-License-Identifier: MIT

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// xorshift64*, as bench_rand() in bench/util.c.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545F4914F6CDD1D)
}

// A field of /proc/self/status in bytes, or -1.
fn status_bytes(field: &str) -> i64 {
    let text = match std::fs::read_to_string("/proc/self/status") {
        Ok(t) => t,
        Err(_) => return -1,
    };
    let prefix = format!("{}:", field);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&prefix) {
            if let Some(kb) = rest.split_whitespace().next() {
                if let Ok(v) = kb.parse::<i64>() {
                    return v * 1024;
                }
            }
        }
    }
    -1
}

// Restarts VmHWM from the current RSS (Linux: clear_refs 5).
fn reset_peak() -> bool {
    match std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
    {
        Ok(mut f) => f.write_all(b"5").is_ok(),
        Err(_) => false,
    }
}

fn cpu_ns() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as i64 * 1_000_000_000 + t.tv_usec as i64 * 1000;
    us(ru.ru_utime) + us(ru.ru_stime)
}

fn opt(args: &[String], name: &str, def: u64) -> u64 {
    for i in 0..args.len() {
        if args[i] == name && i + 1 < args.len() {
            return args[i + 1].parse().unwrap_or_else(|_| {
                eprintln!("rust peer: {} wants a whole number", name);
                std::process::exit(2)
            });
        }
    }
    def
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = opt(&args, "--blockers", 100_000) as usize;
    let threads = opt(&args, "--threads", 2) as usize;
    let max_delay_ms = opt(&args, "--max-delay-ms", 10);
    let seed = opt(&args, "--seed", 42);
    if n < 1 || threads < 1 {
        eprintln!("rust peer: --blockers and --threads must be >= 1");
        std::process::exit(2);
    }

    let mut st = if seed == 0 { 1 } else { seed };
    let max_ns = max_delay_ms * 1_000_000;
    let delays: Vec<u64> = (0..n).map(|_| next_rand(&mut st) % (max_ns + 1)).collect();
    let critical = *delays.iter().max().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_time()
        .build()
        .expect("tokio runtime");

    let peak_ok = reset_peak();
    let rss0 = status_bytes("VmRSS");
    let (register, total, cpu) = rt.block_on(async move {
        let base = Instant::now();
        let t0_off = Arc::new(AtomicU64::new(0));
        let began = CancellationToken::new();
        let parked = Arc::new(AtomicUsize::new(0));
        let mut set = JoinSet::new();
        let r0 = std::time::Instant::now();
        for &d in &delays {
            let began = began.clone();
            let t0_off = t0_off.clone();
            let parked = parked.clone();
            set.spawn(async move {
                parked.fetch_add(1, Ordering::Relaxed);
                began.cancelled().await;
                let t0 = base + Duration::from_nanos(t0_off.load(Ordering::Acquire));
                tokio::time::sleep_until(t0 + Duration::from_nanos(d)).await;
            });
        }
        let register = r0.elapsed();
        // Every task waits at the token before the clock starts.
        while parked.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_micros(100)).await;
        }

        let c0 = cpu_ns();
        let t0 = Instant::now();
        t0_off.store((t0 - base).as_nanos() as u64, Ordering::Release);
        began.cancel();
        while let Some(r) = set.join_next().await {
            r.expect("task");
        }
        let total = t0.elapsed();
        (register, total, cpu_ns() - c0)
    });
    let hwm = status_bytes("VmHWM");

    let peak = if peak_ok && rss0 >= 0 && hwm >= 0 {
        (hwm - rss0) as f64 / n as f64
    } else {
        -1.0
    };
    let ms = |d: Duration| d.as_nanos() as f64 / 1e6;
    let crit_ms = critical as f64 / 1e6;
    println!(
        "{{\"bench\":\"phase\",\"peer\":\"rust-tokio-joinset\",\
         \"runtime\":\"tokio 1.24 (Debian)\",\"blockers\":{},\"threads\":{},\
         \"max_delay_ms\":{},\"seed\":{},\
         \"critical_path_ms\":{:.3},\"total_ms\":{:.3},\"overhead_ms\":{:.3},\
         \"cpu_ms\":{:.3},\"register_ns\":{:.1},\
         \"peak_rss_bytes_per_task\":{:.1}}}",
        n,
        threads,
        max_delay_ms,
        seed,
        crit_ms,
        ms(total),
        ms(total) - crit_ms,
        cpu as f64 / 1e6,
        register.as_nanos() as f64 / n as f64,
        peak
    );
}
