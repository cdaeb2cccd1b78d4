package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// logSummary is what stompgate's log says about session ends.
type logSummary struct {
	err         string
	ended       int            // "session ended" lines in total
	during      int            // ... between the ramp-up start and the first DISCONNECT
	duringLines []string       // the first of those, verbatim
	byEnd       map[string]int // every "session ended" line by end reason and close codes
	warn        int            // warn/error lines
	warnLines   []string
}

const zapTimeLayout = "2006-01-02T15:04:05.000Z0700"

// summarizeLog reads stompgate's JSON log. A "session ended" line between
// from and to (the ramp-up start and the first DISCONNECT) is a session
// that ended before the test ended it.
func summarizeLog(path string, from, to time.Time) logSummary {
	ls := logSummary{byEnd: map[string]int{}}
	if to.IsZero() {
		to = time.Now()
	}
	f, err := os.Open(path)
	if err != nil {
		ls.err = err.Error()
		return ls
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			ls.warn++
			if len(ls.warnLines) < 10 {
				ls.warnLines = append(ls.warnLines, clip(line, 400))
			}
			continue
		}
		level, _ := m["level"].(string)
		msg, _ := m["msg"].(string)
		if level == "warn" || level == "error" || level == "dpanic" || level == "panic" || level == "fatal" {
			ls.warn++
			if len(ls.warnLines) < 10 {
				ls.warnLines = append(ls.warnLines, clip(line, 400))
			}
		}
		if msg != "session ended" {
			continue
		}
		ls.ended++
		key := fmt.Sprintf("end %q, closed_by %v, client %v, upstream %v",
			m["end"], m["closed_by"], m["client_close_code"], m["upstream_close_code"])
		ls.byEnd[key]++
		tsStr, _ := m["ts"].(string)
		ts, err := time.Parse(zapTimeLayout, tsStr)
		if err != nil {
			continue
		}
		if !from.IsZero() && !ts.Before(from) && ts.Before(to) {
			ls.during++
			if len(ls.duringLines) < 20 {
				ls.duringLines = append(ls.duringLines, clip(line, 600))
			}
		}
	}
	if err := sc.Err(); err != nil {
		ls.err = err.Error()
	}
	return ls
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

type verdict struct {
	name   string
	figure string
	pass   bool
}

// judged returns the samples of the hold after the warm-up.
func (r *run) judged() []sample {
	var out []sample
	for _, s := range r.samples {
		if (s.Phase == "hold" || s.Phase == "hold-end") && s.At >= r.o.warmup {
			out = append(out, s)
		}
	}
	return out
}

type seriesDef struct {
	name               string
	unit               string
	get                func(sample) float64
	spread, trend, abs float64
	criterion          bool
	absentIfNegative   bool
	scale              float64
	format             string
	ruleText           string
}

func (r *run) seriesDefs() []seriesDef {
	return []seriesDef{
		{name: "stompgate RSS", unit: "MiB", get: func(s sample) float64 { return float64(s.SG.RSSKB) }, spread: 100, trend: 100, abs: 1e12, scale: 1.0 / 1024, format: "%.1f",
			ruleText: "judged as a plateau (see the criteria)"},
		{name: "stompgate next GC target", unit: "MiB", get: func(s sample) float64 { return s.NextGC / 1024 }, spread: 100, trend: 100, abs: 1e12, absentIfNegative: true, scale: 1.0 / 1024, format: "%.1f",
			ruleText: "2 × the live heap after the last GC (GOGC=100): see the criteria"},
		{name: "stompgate goroutines (floor)", get: func(s sample) float64 { return float64(s.Goroutines) }, spread: 1, trend: 1, abs: 10, criterion: true, absentIfNegative: true, scale: 1, format: "%.0f",
			ruleText: "spread ≤ 1 % and trend ≤ +1 % (or both within 10 goroutines)"},
		{name: "stompgate heap in use", unit: "MiB", get: func(s sample) float64 { return s.HeapInuse / 1024 }, spread: 100, trend: 100, abs: 1e12, scale: 1.0 / 1024, format: "%.1f",
			ruleText: "reported only (a GC sawtooth)"},
		{name: "stompgate fds", get: func(s sample) float64 { return float64(s.SG.FDs) }, spread: 1, trend: 1, abs: 10, scale: 1, format: "%.0f",
			ruleText: "reported only"},
		{name: "stompgate threads", get: func(s sample) float64 { return float64(s.SG.Threads) }, spread: 100, trend: 100, abs: 1e9, scale: 1, format: "%.0f",
			ruleText: "reported only"},
		{name: "broker RSS", unit: "MiB", get: func(s sample) float64 { return float64(s.BRSSKB) }, spread: 100, trend: 100, abs: 1e9, scale: 1.0 / 1024, format: "%.1f",
			ruleText: "reported only"},
	}
}

// RSS limits. A Go heap grows to its GC target (twice the live heap) before
// each collection, so VmRSS rises for a GC cycle or two after the ramp-up
// and then stays at a plateau; a leak shows as a rising live heap (GC
// target) and a peak that keeps rising.
const (
	rssPeakGrowthPct = 5    // second-half peak vs first-half peak
	liveHeapSpread   = 10   // GC target spread over the window
	rssSlackKB       = 4096 // absolute slack for small runs
)

// judgeRSS: after the warm-up, the RSS peak of the second half of the
// window is at most rssPeakGrowthPct above the peak of the first half, and
// the GC target (2 × live heap) varies by at most liveHeapSpread.
func (r *run) judgeRSS() verdict {
	v := verdict{name: "stompgate RSS flat after warm-up"}
	js := r.judged()
	if len(js) < 4 {
		v.figure = fmt.Sprintf("fewer than 4 samples after the %v warm-up", r.o.warmup)
		return v
	}
	mid := (js[0].At + js[len(js)-1].At) / 2
	// The GC target is judged from the first GC cycle that ended after the
	// hold started: earlier targets were set while sessions were still
	// being opened.
	gc0 := int64(-1)
	for _, s := range r.samples {
		if s.Phase == "warm-up" {
			gc0 = s.GCs
			break
		}
	}
	var peakA, peakB, lo, hi, gcN int
	lo = math.MaxInt
	gcLo, gcHi := math.Inf(1), math.Inf(-1)
	for _, s := range js {
		if s.At < mid {
			peakA = max(peakA, s.SG.RSSKB)
		} else {
			peakB = max(peakB, s.SG.RSSKB)
		}
		lo, hi = min(lo, s.SG.RSSKB), max(hi, s.SG.RSSKB)
		if gc0 >= 0 && s.GCs > gc0 {
			gcN++
			gcLo, gcHi = math.Min(gcLo, s.NextGC), math.Max(gcHi, s.NextGC)
		}
	}
	growth := 0.0
	if peakA > 0 {
		growth = float64(peakB-peakA) / float64(peakA) * 100
	}
	peakOK := growth <= rssPeakGrowthPct || peakB-peakA <= rssSlackKB
	gcSpread := 0.0
	if gcN > 0 && gcLo > 0 {
		gcSpread = (gcHi - gcLo) / gcLo * 100
	}
	gcOK := gcN < 2 || gcSpread <= liveHeapSpread || (gcHi-gcLo) <= rssSlackKB*1024
	gcs := js[len(js)-1].GCs - js[0].GCs
	v.pass = peakOK && (gcOK || !r.metricsOK)
	v.figure = fmt.Sprintf("%d samples from t=%s to t=%s: first %.1f, last %.1f, min %.1f, max %.1f MiB; peak of the first half %.1f MiB, of the second half %.1f MiB (%+.2f %%, limit +%d %%)",
		len(js), fmtDur(js[0].At), fmtDur(js[len(js)-1].At), mib(js[0].SG.RSSKB), mib(js[len(js)-1].SG.RSSKB), mib(lo), mib(hi),
		mib(peakA), mib(peakB), growth, rssPeakGrowthPct)
	switch {
	case r.metricsOK && gcN >= 2:
		v.figure += fmt.Sprintf("; GC target (2 × live heap) %.1f–%.1f MiB (spread %.2f %%, limit %d %%) over the %d samples after the first GC that followed the ramp-up; %d GC cycles in the window",
			gcLo/(1<<20), gcHi/(1<<20), gcSpread, liveHeapSpread, gcN, gcs)
	case r.metricsOK:
		v.figure += fmt.Sprintf("; GC target not judged: fewer than 2 samples after the first GC that followed the ramp-up (%d GC cycles in the window)", gcs)
	default:
		v.figure += "; GC target n/a (/metrics not reachable)"
	}
	return v
}

func (r *run) flatFor(d seriesDef) flat {
	var xs, ts []float64
	for _, s := range r.judged() {
		v := d.get(s)
		if d.absentIfNegative && v < 0 {
			return flat{absent: true}
		}
		xs = append(xs, v)
		ts = append(ts, s.At.Seconds())
	}
	return judgeFlat(xs, ts, d.spread, d.trend, d.abs)
}

func (r *run) unexpectedFigures() (total int64, parts []string) {
	add := func(n int64, what string) {
		total += n
		parts = append(parts, fmt.Sprintf("%d %s", n, what))
	}
	if r.pool != nil {
		add(r.pool.unexpectedClients.Load(), "client sessions ended or got ERROR before the test ended them")
	}
	add(r.preLeaveBroker.Closed-r.baselineBroker.Closed, "broker sessions ended before the clients left")
	add(r.preLeaveBroker.ErrorsSent-r.baselineBroker.ErrorsSent, "ERRORs sent by the broker before the clients left")
	add(int64(r.logSummary.during), `stompgate "session ended" lines between the ramp-up and the first DISCONNECT`)
	if r.preLeaveMetrics != nil {
		lf := r.preLeaveMetrics.sum("stompgate_liveness_failures_total") - r.baselineMetrics.sum("stompgate_liveness_failures_total")
		add(int64(lf), "stompgate liveness failures (stompgate_liveness_failures_total)")
	}
	return total, parts
}

func (r *run) verdicts() []verdict {
	var vs []verdict
	if r.setupErr != nil {
		return []verdict{{name: "setup", figure: r.setupErr.Error()}}
	}
	est := 0
	if r.pool != nil {
		est = len(r.pool.established())
	}
	vs = append(vs, verdict{name: "all sessions established",
		figure: fmt.Sprintf("%d of %d established (%d failed)", est, r.o.sessions, r.o.sessions-est),
		pass:   est == r.o.sessions})
	total, parts := r.unexpectedFigures()
	vs = append(vs, verdict{name: "0 unexpected closes", figure: fmt.Sprintf("%d: %s", total, strings.Join(parts, "; ")), pass: total == 0})
	// Flatness means nothing once sessions were lost in the window.
	lost := ""
	for _, s := range r.judged() {
		if s.ClientsUp < est {
			lost = fmt.Sprintf("not meaningful: only %d of %d sessions were up during the judged window; ", s.ClientsUp, est)
			break
		}
	}
	rss := r.judgeRSS()
	if lost != "" {
		rss.pass, rss.figure = false, lost+rss.figure
	}
	vs = append(vs, rss)
	for _, d := range r.seriesDefs() {
		if !d.criterion {
			continue
		}
		f := r.flatFor(d)
		name := d.name + " flat after warm-up"
		switch {
		case lost != "":
			vs = append(vs, verdict{name: name, figure: fmt.Sprintf("%s%d samples: first %s, last %s, min %s, max %s",
				lost, f.n, d.fmt(f.first), d.fmt(f.last), d.fmt(f.lo), d.fmt(f.hi))})
		case f.absent && d.absentIfNegative && !r.metricsOK:
			vs = append(vs, verdict{name: name, figure: "n/a: /metrics not reachable (" + r.metricsErr + ")"})
		case f.absent:
			vs = append(vs, verdict{name: name, figure: fmt.Sprintf("fewer than 2 samples after the %v warm-up", r.o.warmup)})
		default:
			vs = append(vs, verdict{name: name, pass: f.ok, figure: fmt.Sprintf("%d samples: first %s, last %s, min %s, max %s%s; spread %.2f %%, trend %+.2f %% (%s)",
				f.n, d.fmt(f.first), d.fmt(f.last), d.fmt(f.lo), d.fmt(f.hi), d.unitSuffix(), f.spreadPct, f.trendPct, d.ruleText)})
		}
	}
	var rel verdict
	rel.name = fmt.Sprintf("all sessions released within STOMPGATE_CLOSE_TIMEOUT (%v)", r.o.closeTimeout)
	switch {
	case !r.metricsOK:
		rel.figure = "goroutines n/a (/metrics not reachable); fds: " + r.releaseResidual
	case r.released:
		rel.pass = r.releaseAfterLeft <= r.o.closeTimeout
		rel.figure = fmt.Sprintf("released %v after the last client's close handshake ended (%v after the first DISCONNECT; clients took %v to leave): %s",
			r.releaseAfterLeft.Round(time.Millisecond), r.releaseAfterFirst.Round(time.Millisecond),
			r.leaveLast.Sub(r.leaveFirst).Round(time.Millisecond), r.releaseResidual)
	default:
		rel.figure = fmt.Sprintf("not released %v after the clients left: %s", releaseWait(r.o.closeTimeout), r.releaseResidual)
	}
	vs = append(vs, rel)
	return vs
}

func (d seriesDef) fmt(v float64) string { return fmt.Sprintf(d.format, v*d.scale) }

func (d seriesDef) unitSuffix() string {
	if d.unit == "" {
		return ""
	}
	return " " + d.unit
}

func (r *run) allPass() bool {
	if r.setupErr != nil || r.interrupted != "" {
		return false
	}
	for _, v := range r.verdicts() {
		if !v.pass {
			return false
		}
	}
	return true
}

func gitDescribe(root string) string {
	if root == "" {
		return "n/a"
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "n/a"
	}
	s := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		s += " with uncommitted changes"
	}
	return s
}

func (r *run) command() string {
	var b strings.Builder
	b.WriteString("cd bench && ")
	if v := os.Getenv("SOAK_QUICK"); v != "" {
		b.WriteString("SOAK_QUICK=" + v + " ")
	}
	b.WriteString("go run ./cmd/soak")
	for _, a := range r.args {
		b.WriteString(" " + shellQuote(a))
	}
	s := "`" + b.String() + "`"
	if os.Getenv("MAKELEVEL") != "" {
		s = "`make soak` → " + s
	}
	return s
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=.,/:+@", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (r *run) report() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	pass := r.allPass()
	result := "PASS"
	if !pass {
		result = "FAIL"
	}
	if r.interrupted != "" {
		result += " (interrupted by " + r.interrupted + ")"
	}
	w("# stompgate soak: %d sessions × %v, heart-beats %v on both hops\n\n", r.o.sessions, r.o.hold, r.o.heartbeat)
	w("**Result: %s**\n\n", result)

	w("## Run\n\n")
	w("- Command: %s\n", r.command())
	w("- Date: %s → %s (%v)\n", r.start.UTC().Format("2006-01-02 15:04:05 UTC"), time.Now().UTC().Format("15:04:05 UTC"), time.Since(r.start).Round(time.Second))
	w("- Machine: %s; open-file limit %s\n", machine(), openFileLimit())
	w("- Load average (1/5/15 min) at start: %s; at end: %s (the machine is shared)\n", r.loadStart, r.loadEnd)
	w("- stompgate: commit %s, built with `go build ./cmd/stompgate` and run as a subprocess; env:\n", gitDescribe(r.root))
	for _, kv := range r.sgEnv {
		w("  `%s`\n", kv)
	}
	w("- Broker: internal/springbroker (Spring simple-broker semantics) in its own process (`soak broker`), HeartBeat {%v, %v}, endpoint /ws\n", r.o.heartbeat, r.o.heartbeat)
	w("- Clients: %d gorilla/websocket sessions in the soak process, subprotocol v12.stomp, CONNECT heart-beat:%d,%d, an EOL heart-beat every %v; ramp-up at %.0f sessions/s (%d handshakes in flight at most); each SUBSCRIBEs to /topic/soak.<i mod %d>; during the hold %.1f SEND/s from random sessions to their own topic; the end is DISCONNECT (receipt) → RECEIPT → close 1000\n",
		r.o.sessions, r.o.heartbeat.Milliseconds(), r.o.heartbeat.Milliseconds(), r.o.heartbeat, r.o.rampRate, r.o.dialConc, r.o.topics, r.o.sendRate)
	w("- Hold %v after the ramp-up; the first %v is warm-up (not judged for flatness); a sample every %v\n", r.o.hold, r.o.warmup, r.o.sampleEvery)
	w("- Baseline: taken before the ramp-up, after one priming session (connect, subscribe, disconnect) so that what stompgate starts lazily on its first session is in it\n\n")

	w("## Criteria\n\n| criterion | figure | verdict |\n|---|---|---|\n")
	for _, v := range r.verdicts() {
		verdict := "PASS"
		if !v.pass {
			verdict = "FAIL"
		}
		w("| %s | %s | %s |\n", v.name, mdCell(v.figure), verdict)
	}
	w("\n")

	if len(r.samples) > 0 {
		w("## Samples\n\n")
		w("t is the time since the hold started (baseline: before the ramp-up). stompgate: RSS (VmRSS); from the admin /metrics `go_memstats_heap_inuse_bytes`, `go_memstats_stack_inuse_bytes`, `go_memstats_next_gc_bytes`, `go_gc_duration_seconds_count`; open fds and OS threads (/proc); goroutines (`go_goroutines`, min–max of %d scrapes 200 ms apart; flatness is judged on the min, the floor of long-lived goroutines); `stompgate_sessions_active`; CPU (%% of one core since the previous sample). Broker: STOMP sessions, RSS, CPU. Clients: sessions up, sessions that received nothing for > 3 heart-beat periods, sessions with an unexpected end so far, MESSAGEs received so far, CPU of the soak process. Load: 1-minute load average of the machine.\n\n", goroutinesScrapes)
		w("| t | phase | sg RSS MiB | sg heap MiB | sg stacks MiB | sg next GC MiB | sg GCs | sg fds | sg threads | sg goroutines min–max | sg sessions | sg CPU %% | broker sessions | broker RSS MiB | broker CPU %% | clients up | stale | unexpected | MESSAGEs in | clients CPU %% | load |\n")
		w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, s := range r.samples {
			cpu, bcpu, ccpu := fmt.Sprintf("%.0f", s.SGCPU), fmt.Sprintf("%.0f", s.BCPU), fmt.Sprintf("%.0f", s.SelfCPU)
			if i == 0 {
				cpu, bcpu, ccpu = "", "", ""
			}
			g := na(s.Goroutines)
			if s.Goroutines >= 0 {
				g = fmt.Sprintf("%d–%d", s.Goroutines, s.GoroutinesMax)
			}
			w("| %s | %s | %.1f | %.1f | %.1f | %.1f | %d | %d | %d | %s | %s | %s | %s | %.1f | %s | %d | %d | %d | %d | %s | %s |\n",
				fmtDur(s.At), s.Phase, mib(s.SG.RSSKB), s.HeapInuse/(1<<20), s.StackInuse/(1<<20), s.NextGC/(1<<20), s.GCs,
				s.SG.FDs, s.SG.Threads, g, na(s.Sessions), cpu,
				na(s.BSessions), mib(s.BRSSKB), bcpu, s.ClientsUp, s.Stale, s.Unexpected, s.MessagesIn, ccpu, s.Load)
		}
		w("\n")
		w("### After the warm-up (t ≥ %v)\n\n| series | samples | first | last | min | max | spread | trend | rule |\n|---|---:|---:|---:|---:|---:|---:|---:|---|\n", r.o.warmup)
		for _, d := range r.seriesDefs() {
			f := r.flatFor(d)
			if f.absent {
				w("| %s | n/a | | | | | | | %s |\n", d.name, d.ruleText)
				continue
			}
			w("| %s%s | %d | %s | %s | %s | %s | %.2f %% | %+.2f %% | %s |\n", d.name, unitParen(d.unit), f.n,
				d.fmt(f.first), d.fmt(f.last), d.fmt(f.lo), d.fmt(f.hi), f.spreadPct, f.trendPct, d.ruleText)
		}
		w("\n")
	}

	w("## Details\n\n")
	if r.pool != nil {
		p := r.pool
		est := len(p.established())
		w("- Ramp-up: %d sessions in %v; %d failed", est, r.rampEnd.Sub(r.rampStart).Round(time.Millisecond), p.setupFailures.Load())
		if r.subsReady > 0 {
			w("; every SUBSCRIBE registered at the broker %v after the ramp-up", r.subsReady.Round(time.Millisecond))
		}
		w("\n")
		p.mu.Lock()
		for _, e := range p.setupFails[:min(len(p.setupFails), 10)] {
			w("  - %v client %d: %s\n", e.At, e.Client, e.What)
		}
		p.mu.Unlock()
		if n := p.hbMismatch.Load(); n > 0 {
			w("- %d CONNECTED frames had another heart-beat than expected, e.g. %v\n", n, p.hbMismatchSample.Load())
		}
		w("- Heart-beats: clients sent %d and received %d; during the hold the longest silence any session saw was %v, and %d silences were longer than 2 heart-beat periods; the slowest heart-beat pass of a client shard took %v\n",
			p.heartbeatsOut.Load(), p.heartbeatsIn.Load(), time.Duration(p.maxGap.Load()).Round(time.Millisecond), p.lateGaps.Load(), time.Duration(p.maxPass.Load()).Round(time.Millisecond))
		w("- Traffic: %d SENDs during the hold, %d MESSAGEs expected (every subscriber of the topic, sender included), %d received", r.sent, r.expected, r.recvd)
		if n := p.latencyN.Load(); n > 0 {
			w("; SEND → MESSAGE latency (client → stompgate → broker → stompgate → clients) mean %v, max %v, %d over 1 s",
				time.Duration(p.latencySum.Load()/n).Round(time.Microsecond), time.Duration(p.maxLatency.Load()).Round(time.Millisecond), p.latencyOver1s.Load())
		}
		w("\n")
		p.mu.Lock()
		w("- Unexpected client events: %d", p.nEvents)
		if p.nEvents > 0 {
			w(" (first %d):\n", len(p.events[:min(len(p.events), 30)]))
			for _, e := range p.events[:min(len(p.events), 30)] {
				w("  - %v (%s) client %d: %s\n", e.At, e.Phase, e.Client, e.What)
			}
		} else {
			w("\n")
		}
		p.mu.Unlock()
		w("- Leave: %d of %d sessions ended; close 1000 after the RECEIPT: %d; otherwise: %d. How they ended: %s\n",
			r.left, est, p.leaveClean.Load(), p.leaveUnclean.Load(), strings.Join(p.leaveSummary(), "; "))
		p.mu.Lock()
		for _, e := range p.leaveOdd[:min(len(p.leaveOdd), 10)] {
			w("  - %v client %d: %s\n", e.At, e.Client, e.What)
		}
		p.mu.Unlock()
	}
	if r.released {
		w("- Release: stompgate back to baseline %v after the last client left (%v after the first DISCONNECT): %s\n",
			r.releaseAfterLeft.Round(time.Millisecond), r.releaseAfterFirst.Round(time.Millisecond), r.releaseResidual)
	} else if r.pool != nil {
		w("- Release: NOT back to baseline: %s\n", r.releaseResidual)
	}
	if len(r.releaseTrace) > 0 {
		w("- Release timeline (time since the last client's session ended; a line whenever a value changed): sessions_active 0 at %s, fds back at %s, goroutines back at %s\n",
			durp(r.sessionsZeroAt), durp(r.fdsBackAt), durp(r.goroutinesBackAt))
		for _, l := range r.releaseTrace {
			w("  - %s\n", l)
		}
	}
	if r.brokerReleased {
		w("- Broker: no connection left %v after the last client left\n", r.brokerReleaseAfterLeft.Round(time.Millisecond))
	}
	w("- Baseline: stompgate RSS %.1f MiB, %d fds, %d threads, %s–%d goroutines\n", mib(r.baseline.SG.RSSKB), r.baseline.SG.FDs, r.baseline.SG.Threads, na(r.baseline.Goroutines), r.baseline.GoroutinesMax)
	fb := r.finalBroker
	w("- Broker over the run: %d sessions opened, %d ended (%d before the clients left, the priming session excluded), %d read timeouts, %d ERRORs sent\n",
		fb.Opened, fb.Closed, r.preLeaveBroker.Closed-r.baselineBroker.Closed, fb.ReadTimeouts, fb.ErrorsSent)
	w("  - broker writes: the longest time a session went without any write from the broker (heart-beat or frame: the upstream silence stompgate sees) was %v (at %s); %d silences over 2 s, %d over 3 s",
		time.Duration(fb.MaxSilenceMs)*time.Millisecond, fb.MaxSilenceAt, fb.SilencesOver2s, fb.SilencesOver3s)
	if len(fb.SilencesBySecond) > 0 {
		var parts []string
		for _, k := range sortedKeys(fb.SilencesBySecond) {
			parts = append(parts, fmt.Sprintf("%s %d", k, fb.SilencesBySecond[k]))
		}
		w(" (silences over 2 s ending in each second: %s)", clip(strings.Join(parts, ", "), 1500))
	}
	var upTimeouts float64
	if r.preLeaveMetrics != nil {
		upTimeouts = r.preLeaveMetrics.byLabels("stompgate_liveness_failures_total")[`hop="upstream",reason="heartbeat_timeout"`] -
			r.baselineMetrics.byLabels("stompgate_liveness_failures_total")[`hop="upstream",reason="heartbeat_timeout"`]
	}
	if r.preLeaveMetrics != nil {
		late, base := r.preLeaveMetrics.byLabels("stompgate_late_reads_total"), r.baselineMetrics.byLabels("stompgate_late_reads_total")
		// Per hop, the total and what showed each (the evidence label).
		byHop := func(hop string) string {
			var total float64
			parts := []string{}
			for _, e := range []string{"unread", "read", "kernel"} {
				k := `evidence="` + e + `",hop="` + hop + `"`
				n := late[k] - base[k]
				total += n
				parts = append(parts, fmt.Sprintf("%s %.0f", e, n))
			}
			return fmt.Sprintf("%s %.0f (%s)", hop, total, strings.Join(parts, ", "))
		}
		w("\n  - stompgate's late reads before the clients left (`stompgate_late_reads_total`: read deadlines that passed after the peer's bytes had reached the host, so not deaths; by the evidence that showed it): %s; %s",
			byHop("upstream"), byHop("client"))
	}
	if upTimeouts > 0 {
		w("\n  - diagnosis: stompgate ended %.0f sessions with \"upstream heart-beat timeout\"; the broker itself left a session without any write for over 3 s %d times (and for over 2 s %d times: the heart-beat task is one goroutine for all sessions, scheduled with a fixed delay after each pass, and, as in Spring, skips sessions written to within the last period, so silences up to 2 periods + a pass are normal).",
			upTimeouts, fb.SilencesOver3s, fb.SilencesOver2s)
		if float64(fb.SilencesOver3s) < upTimeouts/2 {
			w(" Most timed-out sessions had a broker write within 3 s: their heart-beats reached stompgate's liveness check late, between the broker's write and stompgate's read (see the CPU and load columns).")
		} else {
			w(" The broker's own silences account for most of them: the broker fell behind.")
		}
	}
	if growth, losses, err := r.net.summary(); err != nil {
		w("\n  - kernel network counters: not read (%v)", err)
	} else if growth != "" {
		w("\n  - kernel network counters over the run (/proc/net/softnet_stat, /proc/net/snmp, /proc/net/netstat, read every second; the first five count packets lost in the machine's kernel and retransmission timeouts): %s", growth)
		if len(losses) > 0 {
			w("; seconds in which one of the first five grew: %s", strings.Join(losses, "; "))
		}
	}
	w("\n  - broker heart-beat task: %d passes, the longest %v; the longest time between the starts of two passes %v (at %s; Spring's fixed delay: period + pass)\n",
		fb.Passes, time.Duration(fb.MaxPassMs)*time.Millisecond, time.Duration(fb.MaxPassGapMs)*time.Millisecond, fb.MaxPassGapAt)
	for _, k := range sortedKeys(fb.Closes) {
		w("  - %d × %s\n", fb.Closes[k], k)
	}
	if n := r.preLeaveBroker.Closed - r.baselineBroker.Closed; n > 0 {
		w("  - first broker-side ends:\n")
		for _, l := range r.preLeaveBroker.FirstEnds {
			w("    - %s\n", l)
		}
	}
	ls := r.logSummary
	w("- stompgate log: %d \"session ended\" lines (%d between the ramp-up and the first DISCONNECT); %d warn/error lines", ls.ended, ls.during, ls.warn)
	if ls.err != "" {
		w(" (reading it: %s)", ls.err)
	}
	w("\n")
	for _, k := range sortedKeys(ls.byEnd) {
		w("  - %d × %s\n", ls.byEnd[k], k)
	}
	if len(ls.duringLines) > 0 {
		w("  - unexpected session ends, verbatim:\n")
		for _, l := range ls.duringLines {
			w("    - `%s`\n", l)
		}
	}
	if len(ls.warnLines) > 0 {
		w("  - warn/error lines, verbatim (first %d):\n", len(ls.warnLines))
		for _, l := range ls.warnLines {
			w("    - `%s`\n", l)
		}
	}
	if m := r.finalMetrics; m != nil {
		w("- stompgate counters at the end (the priming session included):\n")
		for _, fam := range []string{"stompgate_handshakes_total", "stompgate_closes_total", "stompgate_liveness_failures_total",
			"stompgate_heartbeats_sent_total", "stompgate_heartbeats_received_total", "stompgate_pings_sent_total", "stompgate_pongs_received_total"} {
			series := m.byLabels(fam)
			if v, ok := m.get(fam); ok {
				series[""] = v
			}
			if len(series) == 0 {
				w("  - %s: none\n", fam)
				continue
			}
			var parts []string
			for _, k := range sortedKeys(series) {
				if k == "" {
					parts = append(parts, fmt.Sprintf("%.0f", series[k]))
				} else {
					parts = append(parts, fmt.Sprintf("{%s} %.0f", k, series[k]))
				}
			}
			w("  - %s: %s\n", fam, strings.Join(parts, ", "))
		}
	}
	if r.soakRSSKB > 0 {
		w("- The soak process itself (clients): RSS %.1f MiB at the end\n", mib(r.soakRSSKB))
	}
	w("- Stop: stompgate (SIGTERM) %s; broker (stdin closed) %s\n", r.sgStop, r.brokerStop)
	for _, n := range r.notes {
		w("- Note: %s\n", n)
	}
	if r.setupErr != nil {
		w("- Setup failed: %s\n", r.setupErr)
	}
	if len(r.dumps) > 0 {
		w("- stompgate goroutine dumps (pprof, debug=1): %s\n", strings.Join(r.dumps, ", "))
	}
	if r.tmp != "" {
		if pass && !r.o.keep {
			w("- Logs: %s (removed after a passing run; -keep keeps them)\n", r.tmp)
		} else {
			w("- Logs: %s/stompgate.log, %s/broker.log (kept)\n", r.tmp, r.tmp)
		}
	}
	return b.String()
}

func durp(d *time.Duration) string {
	if d == nil {
		return "never"
	}
	return fmt.Sprintf("%+v", d.Round(time.Millisecond))
}

func unitParen(u string) string {
	if u == "" {
		return ""
	}
	return " (" + u + ")"
}

func mdCell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
