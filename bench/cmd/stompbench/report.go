package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Saturation thresholds: a side is saturated when it used at least this
// fraction of its CPU during the measured window.
const saturated = 0.90

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func proxySat(r *loadResult) bool  { return r.ProxyUse >= saturated }
func clientSat(r *loadResult) bool { return r.Client >= saturated && !proxySat(r) }

type agg struct {
	rate, cpu, p50, p90, p99, max, use, client []float64
	other0, other1                             []float64
	disturbed                                  int
	clientSat, proxySat, retried, errs, n      int
}

func aggregate(cells []cell, w workload, target string, stealMax, otherMax float64) agg {
	var a agg
	for _, c := range cells {
		if c.Target != target || c.Body != w.body || c.Conns != w.conns || c.Inflight != w.inflight {
			continue
		}
		a.n++
		if c.Attempts > 1 {
			a.retried++
		}
		r := c.Result
		if r == nil || r.Errors > 0 {
			a.errs++
			continue
		}
		a.rate = append(a.rate, r.Rate)
		a.cpu = append(a.cpu, r.CPUPerRT)
		a.p50 = append(a.p50, r.P50)
		a.p90 = append(a.p90, r.P90)
		a.p99 = append(a.p99, r.P99)
		a.max = append(a.max, r.Max)
		a.use = append(a.use, r.ProxyUse)
		a.client = append(a.client, r.Client)
		a.other0 = append(a.other0, r.OtherProxyCPU)
		a.other1 = append(a.other1, r.OtherClientCPU)
		if r.Steal > stealMax || (target != "direct" && r.OtherProxyCPU > otherMax) || r.OtherClientCPU > otherMax {
			a.disturbed++
		}
		if clientSat(r) {
			a.clientSat++
		}
		if proxySat(r) && target != "direct" {
			a.proxySat++
		}
	}
	return a
}

// ratios are stompgate ÷ nginx for each round where both cells succeeded.
type ratios struct {
	rate, cpu, p99 []float64
	sgSat, ngSat   int // rounds where each proxy was saturated
}

func roundRatios(cells []cell, w workload) ratios {
	find := func(round int, t string) *loadResult {
		for _, c := range cells {
			if c.Round == round && c.Target == t && c.Body == w.body && c.Conns == w.conns && c.Inflight == w.inflight && c.Result != nil && c.Result.Errors == 0 {
				return c.Result
			}
		}
		return nil
	}
	var q ratios
	for round := 1; ; round++ {
		any := false
		for _, c := range cells {
			if c.Round == round {
				any = true
			}
		}
		if !any {
			break
		}
		s, n := find(round, "stompgate"), find(round, "nginx")
		if s == nil || n == nil || n.Rate == 0 || n.CPUPerRT == 0 || n.P99 == 0 {
			continue
		}
		q.rate = append(q.rate, s.Rate/n.Rate)
		q.cpu = append(q.cpu, s.CPUPerRT/n.CPUPerRT)
		q.p99 = append(q.p99, s.P99/n.P99)
		if proxySat(s) {
			q.sgSat++
		}
		if proxySat(n) {
			q.ngSat++
		}
	}
	return q
}

// ratioCell prints the median of per-round ratios and the rounds' own, in
// round order: on a machine where a cell moves by a fifth from round to
// round, a verdict near its threshold says little without them. A median
// that would print as the threshold itself gets a third decimal, so that
// "1.20×" never stands beside a missed 1.2 target.
func ratioCell(v []float64, threshold float64) string {
	m := median(v)
	f := "%.2f×"
	if fmt.Sprintf("%.2f", m) == fmt.Sprintf("%.2f", threshold) && m != threshold {
		f = "%.3f×"
	}
	rounds := make([]string, len(v))
	for i, x := range v {
		rounds[i] = fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf(f, m) + " (" + strings.Join(rounds, ", ") + ")"
}

func report(f runFlags, m machineEnv, cells []cell, idles []idleResult, pump string, perfCells []cell) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	works := f.workloads()
	mode := ""
	if f.quick {
		mode = " (QUICK MODE: development figures, not for comparison)"
	}
	p("Measured on %s%s, %s elapsed, with:\n\n```sh\n%s\n```\n\n", m.Date, mode, m.Elapsed, m.Command)
	if f.args != m.Command {
		p("(which runs `bash bench/deps.sh` and `%s`)\n\n", strings.TrimSpace(f.args))
	}
	p("- machine: `%s`; CPU: %s; `nproc`: %d; load average %s at the start, %s at the end\n", m.Uname, m.CPU, m.NProc, m.LoadStart, m.LoadEnd)
	p("- %s; nginx %s from Debian (`worker_processes 1`, default buffers, `proxy_pass` with the Upgrade headers); stompgate built from this tree with its defaults (terminate mode, heart-beats 10000,10000 on both hops) and `GOMAXPROCS=1`\n", m.Go, m.Nginx)
	p("- every proxy pinned to CPU %d, the load generator and the echo upstream to CPU %d (`taskset`), all on 127.0.0.1; the echo answers CONNECT with CONNECTED and each SEND with a MESSAGE carrying the same headers and body\n", f.proxyCPU, f.clientCPU)
	p("- each cell: N connections × W STOMP SEND frames in flight per connection (W = %s), closed loop, %s warm-up then %s measured; every reply checked for content and order; %d rounds, targets interleaved (direct, nginx, stompgate; then rotated each round); figures are medians over rounds\n", joinInts(f.inflight), f.warmup, f.duration, f.rounds)
	p("- a round trip is one SEND to the echo and its MESSAGE back: 2 messages forwarded by the proxy. Proxy CPU is utime+stime of the proxy's processes (nginx: master + worker) from `/proc/<pid>/stat` over the measured window, per round trip. Latency is from writing a SEND to reading its MESSAGE, in µs. The proxies' system calls are counted in the separate `perf stat` cells below the table (both use recv/send, which `/proc/<pid>/io` does not count)\n")
	p("- flags: `client-sat k/n`: in k of n rounds the client CPU was ≥ %.0f%% busy while the proxy was not (the figure is the client's limit, not the proxy's); `proxy-sat k/n`: the proxy used ≥ %.0f%% of its CPU; `other load`: the share of each pinned CPU used by processes outside the benchmark (busy time from `/proc/stat` minus the proxy's, or the load generator's and echo's, own CPU time); a cell is disturbed when CPU steal exceeded %.0f%% or other load exceeded %.0f%% of a pinned CPU, and is then repeated (at most %d times, and within a budget for the whole run) keeping the least disturbed attempt; `retried k`: k cells were repeated; `disturbed k/n`: k of the kept cells were still disturbed; `ERR k`: k cells failed or saw a wrong reply\n\n", 100*saturated, 100*saturated, 100*f.stealMax, 100*f.otherMax, f.retries)

	p("| body | conns × W | target | round trips/s | proxy CPU µs/rt | p50 µs | p90 µs | p99 µs | max µs | proxy CPU use | client CPU busy | other load CPU %d / %d | flags |\n", f.proxyCPU, f.clientCPU)
	p("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, w := range works {
		for _, t := range f.targets {
			a := aggregate(cells, w, t, f.stealMax, f.otherMax)
			var flags []string
			if a.clientSat > 0 {
				flags = append(flags, fmt.Sprintf("client-sat %d/%d", a.clientSat, a.n))
			}
			if a.proxySat > 0 {
				flags = append(flags, fmt.Sprintf("proxy-sat %d/%d", a.proxySat, a.n))
			}
			if a.retried > 0 {
				flags = append(flags, fmt.Sprintf("retried %d", a.retried))
			}
			if a.disturbed > 0 {
				flags = append(flags, fmt.Sprintf("disturbed %d/%d", a.disturbed, a.n))
			}
			if a.errs > 0 {
				flags = append(flags, fmt.Sprintf("ERR %d", a.errs))
			}
			cpu, use := fmt.Sprintf("%.2f", median(a.cpu)), fmt.Sprintf("%.0f%%", 100*median(a.use))
			if t == "direct" {
				cpu, use = "—", "—"
			}
			if len(a.rate) == 0 {
				p("| %s | %d × %d | %s | — | — | — | — | — | — | — | — | — | %s |\n", sizeName(w.body), w.conns, w.inflight, t, strings.Join(flags, ", "))
				continue
			}
			p("| %s | %d × %d | %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %.0f%% | %.0f%% / %.0f%% | %s |\n", sizeName(w.body), w.conns, w.inflight, t,
				thousands(median(a.rate)), cpu, median(a.p50), median(a.p90), median(a.p99), median(a.max), use, 100*median(a.client),
				100*median(a.other0), 100*median(a.other1), strings.Join(flags, ", "))
		}
	}
	if slices.Contains(f.targets, "stompgate") && slices.Contains(f.targets, "nginx") {
		p("\nstompgate ÷ nginx, the median of the per-round ratios, each round's in parentheses (targets: CPU per message ≤ 1.2, p99 ≤ 1.2, throughput ≥ 1.0 where the proxy is the saturated side):\n\n")
		p("| body | conns × W | throughput | CPU per round trip | p99 latency | rounds proxy-saturated (stompgate / nginx) | verdict |\n")
		p("|---|---|---:|---:|---:|---|---|\n")
		for _, w := range works {
			q := roundRatios(cells, w)
			if len(q.rate) == 0 {
				p("| %s | %d × %d | — | — | — | — | no comparable rounds |\n", sizeName(w.body), w.conns, w.inflight)
				continue
			}
			rr, cr, pr := median(q.rate), median(q.cpu), median(q.p99)
			var v []string
			v = append(v, verdict("CPU", cr <= 1.2))
			v = append(v, verdict("p99", pr <= 1.2))
			if 2*q.sgSat > len(q.rate) {
				v = append(v, verdict("throughput", rr >= 1.0))
			} else {
				v = append(v, "throughput n/a (stompgate not saturated)")
			}
			p("| %s | %d × %d | %s | %s | %s | %d/%d / %d/%d | %s |\n", sizeName(w.body), w.conns, w.inflight,
				ratioCell(q.rate, 1.0), ratioCell(q.cpu, 1.2), ratioCell(q.p99, 1.2), q.sgSat, len(q.rate), q.ngSat, len(q.rate), strings.Join(v, ", "))
		}
	}
	if len(idles) > 0 {
		p("\nIdle STOMP sessions (CONNECT with `heart-beat:10000,10000`, so heart-beat timers run on both hops; the load generator and the echo send heart-beats and answer pings), each proxy freshly started: RSS per session = (VmRSS after holding the sessions %s − VmRSS before the first one) ÷ sessions; nginx counts master + worker. Target: ≤ 16 KiB per session at 9,900 sessions.\n\n", f.hold)
		p("| target | sessions | RSS before | RSS after | RSS per session | lost during hold | proxy CPU during hold | verdict |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range idles {
			if r.FirstErr != "" && r.EndRSS == 0 {
				p("| %s | %d | — | — | — | — | — | failed: %s |\n", r.Target, r.Sessions, r.FirstErr)
				continue
			}
			v := "—"
			if r.Target == "stompgate" {
				v = verdict("RSS", r.PerSession <= 16<<10)
			}
			p("| %s | %s | %.1f MiB | %.1f MiB | %.1f KiB | %d | %.2f s | %s |\n", r.Target, thousands(float64(r.Sessions)), float64(r.BaseRSS)/(1<<20), float64(r.EndRSS)/(1<<20), r.PerSession/1024, r.Lost, r.HoldCPU, v)
		}
		for _, r := range idles {
			if r.Target != "stompgate" || len(r.Go) == 0 || r.Sessions == 0 {
				continue
			}
			k := float64(r.Sessions)
			p("\nstompgate's Go runtime at the end of the hold (from its `/metrics`): %.0f goroutines (%.2f per session), stacks %.1f MiB (%.1f KiB per session), heap in use %.1f MiB (%.1f KiB per session), heap allocated %.1f MiB (%.1f KiB per session, garbage not yet collected included), runtime total from the OS %.1f MiB.\n",
				r.Go["go_goroutines"], r.Go["go_goroutines"]/k,
				r.Go["go_memstats_stack_inuse_bytes"]/(1<<20), r.Go["go_memstats_stack_inuse_bytes"]/k/1024,
				r.Go["go_memstats_heap_inuse_bytes"]/(1<<20), r.Go["go_memstats_heap_inuse_bytes"]/k/1024,
				r.Go["go_memstats_heap_alloc_bytes"]/(1<<20), r.Go["go_memstats_heap_alloc_bytes"]/k/1024,
				r.Go["go_memstats_sys_bytes"]/(1<<20))
		}
	}
	if len(perfCells) > 0 {
		p("\nSystem calls of the proxy per round trip, counted with `perf stat` tracepoints in separate cells (one round, not in the table above: counting slows the proxy a little): reads = read, readv, recvfrom, recvmsg; writes = write, writev, sendto, sendmsg; all = every system call.\n\n")
		p("| body | conns × W | target | round trips/s | reads | writes | epoll_wait | futex | all |\n")
		p("|---|---|---|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range perfCells {
			if c.Result == nil || c.Result.Syscalls == nil {
				p("| %s | %d × %d | %s | — | — | — | — | — | %s |\n", sizeName(c.Body), c.Conns, c.Inflight, c.Target, c.Err)
				continue
			}
			m := c.Result.Syscalls
			p("| %s | %d × %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", sizeName(c.Body), c.Conns, c.Inflight, c.Target, thousands(c.Result.Rate), m["read"], m["write"], m["epoll"], m["futex"], m["all"])
		}
	}
	if pump != "" {
		p("\nAllocations on the forwarding path, from the pump micro-benchmark (`proxy/pump_bench_test.go`: one connection, one frame in flight; the client and the echo write pre-encoded frames on raw sockets and allocate nothing, as the `direct` lines show, so allocations are the proxy's; `allocs/frame` = allocs/op ÷ 2):\n\n")
		p("```sh\ngo test -run '^$' -bench '^BenchmarkPump' -benchmem -count 1 -benchtime %s ./proxy/\n```\n\n```\n", f.pump)
		for _, line := range strings.Split(strings.TrimSpace(pump), "\n") {
			if strings.HasPrefix(line, "Benchmark") || strings.HasPrefix(line, "goos") || strings.HasPrefix(line, "goarch") || strings.HasPrefix(line, "cpu") || strings.Contains(line, "FAIL") {
				p("%s\n", line)
			}
		}
		p("```\n")
	}
	return b.String()
}

func verdict(what string, ok bool) string {
	if ok {
		return what + " met"
	}
	return what + " **missed**"
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

// writeReport writes md to path, creating its directory.
func writeReport(path, md string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(md), 0o644)
}
