// The Go peer of curfew-bench phase: N tasks, each a goroutine of an
// errgroup.Group that finishes delay[i] after the wait starts, on T
// threads (GOMAXPROCS). The delays come from the same generator and seed as
// curfew-bench, so both wait for the same work.
//
// Registration (g.Go) happens before the clock starts, as curfew's adds
// happen before curfew_begin: each goroutine first waits for a start
// channel (as it would wait for ctx.Done()), then sleeps until its due
// time. The clock starts once every goroutine has reached that wait;
// total_ms runs from closing the channel to g.Wait() returning.
// register_ns is the g.Go loop alone, while the goroutines already started
// run on the other threads and queue on the channel.
//
// SPDX-License-Identifier: MIT
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// xorshift64*, as bench_rand() in bench/util.c.
func nextRand(state *uint64) uint64 {
	x := *state
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*state = x
	return x * 0x2545F4914F6CDD1D
}

// A field of /proc/self/status in bytes, or -1.
func statusBytes(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, field+":") {
			parts := strings.Fields(line[len(field)+1:])
			if len(parts) > 0 {
				kb, err := strconv.ParseInt(parts[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return -1
}

// Restarts VmHWM from the current RSS (Linux: clear_refs 5).
func resetPeak() bool {
	f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.Write([]byte("5"))
	return err == nil
}

func cpuNs() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func main() {
	n := flag.Int("blockers", 100000, "tasks")
	threads := flag.Int("threads", 2, "GOMAXPROCS")
	maxDelay := flag.Int64("max-delay-ms", 10, "largest delay, ms")
	seed := flag.Uint64("seed", 42, "seed of the delays")
	flag.Parse()
	if *n < 1 || *threads < 1 {
		fmt.Fprintln(os.Stderr, "go peer: --blockers and --threads must be >= 1")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(*threads)

	st := *seed
	if st == 0 {
		st = 1
	}
	maxNs := uint64(*maxDelay) * 1000000
	delays := make([]time.Duration, *n)
	var critical time.Duration
	for i := range delays {
		delays[i] = time.Duration(nextRand(&st) % (maxNs + 1))
		if delays[i] > critical {
			critical = delays[i]
		}
	}
	runtime.GC()

	peakOK := resetPeak()
	rss0 := statusBytes("VmRSS")
	var g errgroup.Group
	start := make(chan struct{})
	var t0 time.Time
	var parked int64
	r0 := time.Now()
	for _, d := range delays {
		d := d
		g.Go(func() error {
			atomic.AddInt64(&parked, 1)
			<-start
			if w := time.Until(t0.Add(d)); w > 0 {
				time.Sleep(w)
			}
			return nil
		})
	}
	register := time.Since(r0)
	// Every task waits at the start signal before the clock starts.
	for atomic.LoadInt64(&parked) < int64(*n) {
		time.Sleep(100 * time.Microsecond)
	}

	c0 := cpuNs()
	t0 = time.Now()
	close(start)
	err := g.Wait()
	total := time.Since(t0)
	c1 := cpuNs()
	hwm := statusBytes("VmHWM")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go peer:", err)
		os.Exit(1)
	}

	peak := -1.0
	if peakOK && rss0 >= 0 && hwm >= 0 {
		peak = float64(hwm-rss0) / float64(*n)
	}
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	fmt.Printf("{\"bench\":\"phase\",\"peer\":\"go-errgroup\","+
		"\"runtime\":\"%s\",\"blockers\":%d,\"threads\":%d,"+
		"\"max_delay_ms\":%d,\"seed\":%d,"+
		"\"critical_path_ms\":%.3f,\"total_ms\":%.3f,\"overhead_ms\":%.3f,"+
		"\"cpu_ms\":%.3f,\"register_ns\":%.1f,"+
		"\"peak_rss_bytes_per_task\":%.1f}\n",
		runtime.Version(), *n, *threads, *maxDelay, *seed,
		ms(critical), ms(total), ms(total)-ms(critical),
		float64(c1-c0)/1e6, float64(register.Nanoseconds())/float64(*n),
		peak)
}
