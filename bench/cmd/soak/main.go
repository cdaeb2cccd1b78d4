// Command soak is stompgate's soak test (`make soak`): many STOMP sessions
// through a stompgate subprocess to the Spring-semantics test broker
// (internal/springbroker, in a second subprocess), with heart-beats on both
// hops, held for a long time. It checks that no session ends unexpectedly,
// that stompgate's RSS and goroutine count stay flat after a warm-up, and
// that every session is released (goroutines and file descriptors back to
// the baseline taken before the ramp-up) within STOMPGATE_CLOSE_TIMEOUT
// after the clients leave. It prints a markdown report and exits 0 only if
// every criterion holds.
//
// From bench/:
//
//	go run ./cmd/soak                 # 9,900 sessions × 10 min (make soak)
//	SOAK_QUICK=1 go run ./cmd/soak    # 500 sessions × 60 s
//	go run ./cmd/soak -h              # every flag
//
// `soak broker` runs the broker process; the soak starts it itself.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stompgate/stompgate/bench/internal/repo"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "broker" {
		os.Exit(brokerMain(os.Args[2:]))
	}
	os.Exit(soakMain(os.Args[1:]))
}

type options struct {
	sessions     int
	hold         time.Duration
	heartbeat    time.Duration
	rampRate     float64
	dialConc     int
	warmup       time.Duration
	sampleEvery  time.Duration
	sendRate     float64
	topics       int
	closeTimeout time.Duration
	stompgateBin string
	out          string
	deadline     time.Duration
	keep         bool
	quick        bool
	env          multiFlag
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.IntVar(&o.sessions, "sessions", 9900, "STOMP sessions to hold")
	fs.DurationVar(&o.hold, "hold", 10*time.Minute, "how long the sessions are held after the ramp-up")
	fs.DurationVar(&o.heartbeat, "heartbeat", time.Second, "heart-beat period on both hops (client CONNECT, STOMPGATE_*_HEARTBEAT, broker)")
	fs.Float64Var(&o.rampRate, "ramp-rate", 200, "new sessions per second during the ramp-up (each costs two WebSocket handshakes; 500/s saturates 2 cores)")
	fs.IntVar(&o.dialConc, "dial-concurrency", 64, "handshakes in flight during the ramp-up")
	fs.DurationVar(&o.warmup, "warmup", time.Minute, "start of the hold not judged for flatness")
	fs.DurationVar(&o.sampleEvery, "sample", 10*time.Second, "sampling interval")
	fs.Float64Var(&o.sendRate, "send-rate", 10, "SENDs per second during the hold (0: none), each to the sender's topic")
	fs.IntVar(&o.topics, "topics", 0, "topics the sessions subscribe to, round robin (0: sessions/10)")
	fs.DurationVar(&o.closeTimeout, "close-timeout", 5*time.Second, "STOMPGATE_CLOSE_TIMEOUT, also the release deadline")
	fs.StringVar(&o.stompgateBin, "stompgate-bin", "", "use this stompgate binary instead of building ./cmd/stompgate")
	fs.StringVar(&o.out, "out", "", `write the report here too (default bench/results/soak.md for the full run, none for SOAK_QUICK; "-" for none)`)
	fs.DurationVar(&o.deadline, "deadline", 0, "hard deadline for the whole run (0: computed from the other flags)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, binary) even when every criterion holds")
	fs.BoolVar(&o.quick, "quick", os.Getenv("SOAK_QUICK") != "" && os.Getenv("SOAK_QUICK") != "0",
		"short run for development: 500 sessions, 60 s hold, 15 s warm-up (default from SOAK_QUICK=1); explicit flags win")
	fs.Var(&o.env, "env", "extra KEY=VALUE for stompgate's environment (repeatable)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["sessions"] {
			o.sessions = 500
		}
		if !set["hold"] {
			o.hold = 60 * time.Second
		}
		if !set["warmup"] {
			o.warmup = 15 * time.Second
		}
		if !set["out"] {
			o.out = "-"
		}
	}
	if o.topics <= 0 {
		o.topics = max(1, o.sessions/10)
	}
	switch {
	case o.sessions <= 0:
		return o, errors.New("-sessions must be positive")
	case o.heartbeat < 100*time.Millisecond:
		return o, errors.New("-heartbeat must be at least 100ms")
	case o.rampRate <= 0 || o.dialConc <= 0:
		return o, errors.New("-ramp-rate and -dial-concurrency must be positive")
	case o.sampleEvery <= 0 || o.hold <= 0:
		return o, errors.New("-sample and -hold must be positive")
	}
	if o.deadline == 0 {
		ramp := time.Duration(float64(o.sessions) / o.rampRate * float64(time.Second))
		o.deadline = 4*time.Minute + 3*ramp + time.Minute + o.hold + 15*time.Second +
			leaveTimeout + 5*time.Second + releaseWait(o.closeTimeout) + time.Minute + 2*time.Minute
	}
	return o, nil
}

const (
	leaveTimeout      = 30 * time.Second
	goroutinesScrapes = 5
)

func releaseWait(closeTimeout time.Duration) time.Duration {
	return max(3*closeTimeout, 30*time.Second)
}

// child is a subprocess the soak started; only these are ever signalled.
type child struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	stdin   io.WriteCloser
}

var (
	childrenMu sync.Mutex
	children   []*child
)

func startChild(name string, cmd *exec.Cmd) (*child, error) {
	// Own process group: a Ctrl-C on the terminal reaches the soak only,
	// which stops its children in order. Pdeathsig: the kernel kills them
	// if the soak dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	childrenMu.Lock()
	children = append(children, c)
	childrenMu.Unlock()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop signals the child and waits up to grace, then kills it. It reports
// how it ended.
func (c *child) stop(sig syscall.Signal, grace time.Duration) string {
	if c.exited() {
		return fmt.Sprintf("had already exited (%v)", exitDesc(c.waitErr))
	}
	began := time.Now()
	if sig != 0 {
		_ = c.cmd.Process.Signal(sig)
	}
	select {
	case <-c.done:
		return fmt.Sprintf("exited %s in %v", exitDesc(c.waitErr), time.Since(began).Round(time.Millisecond))
	case <-time.After(grace):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	return fmt.Sprintf("did not exit within %v: killed", grace)
}

func exitDesc(err error) string {
	if err == nil {
		return "with status 0"
	}
	return err.Error()
}

// killChildren kills every child still running (failure paths, deadline).
func killChildren() {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	for _, c := range children {
		if !c.exited() {
			_ = c.cmd.Process.Kill()
		}
	}
}

func soakMain(args []string) int {
	o, err := parseOptions(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	r := &run{o: o, start: time.Now(), args: args}
	defer killChildren()

	// The hard deadline: the context ends first so the run can still stop
	// in order and report; the watchdog ends the process 30 s later
	// whatever happens.
	ctx, cancel := context.WithTimeout(context.Background(), o.deadline)
	defer cancel()
	watchdog := time.AfterFunc(o.deadline+30*time.Second, func() {
		fmt.Fprintf(os.Stderr, "soak: hard deadline (%v) passed: killing the subprocesses and exiting\n", o.deadline)
		killChildren()
		os.Exit(3)
	})
	defer watchdog.Stop()
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		s, ok := <-sig
		if !ok {
			return
		}
		fmt.Fprintf(os.Stderr, "soak: %v: stopping (again to exit at once)\n", s)
		r.interrupted = s.String()
		cancel()
		if _, ok := <-sig; ok {
			killChildren()
			os.Exit(130)
		}
	}()

	code := r.execute(ctx)
	report := r.report()
	fmt.Print(report)
	if r.outPath != "" {
		if err := os.WriteFile(r.outPath, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "soak: write report:", err)
		} else {
			fmt.Fprintf(os.Stderr, "soak: report written to %s\n", r.outPath)
		}
	}
	if r.tmp != "" {
		if code == 0 && !o.keep {
			_ = os.RemoveAll(r.tmp)
		} else {
			fmt.Fprintf(os.Stderr, "soak: logs kept in %s\n", r.tmp)
		}
	}
	return code
}

// run holds everything one soak run measures.
type run struct {
	o           options
	args        []string
	start       time.Time
	root        string
	tmp         string
	outPath     string
	interrupted string
	setupErr    error
	notes       []string

	sgLog, brokerLog string
	sg, broker       *child
	sgAddr, admin    string
	brokerAddr       string
	sgEnv            []string
	scr, bscr, pscr  *scraper // stompgate admin, broker, stompgate pprof: one kept-alive connection each
	pprofAddr        string
	dumps            []string
	pool             *clientPool
	metricsOK        bool
	metricsErr       string

	baseline              sample
	baselineBroker        brokerStats
	baselineMetrics       promSample
	samples               []sample
	rampStart, rampEnd    time.Time
	holdStart             time.Time
	subsReady             time.Duration
	sent, expected, recvd int64
	preLeaveBroker        brokerStats
	preLeaveMetrics       promSample
	leaveFirst, leaveLast time.Time
	left                  int
	released              bool
	releaseAfterLeft      time.Duration
	releaseAfterFirst     time.Duration
	releaseResidual       string
	brokerReleased        bool
	releaseTrace          []string
	// When each release condition first held, after the last client left.
	sessionsZeroAt, fdsBackAt, goroutinesBackAt *time.Duration
	brokerReleaseAfterLeft                      time.Duration
	finalMetrics                                promSample
	finalBroker                                 brokerStats
	sgStop, brokerStop                          string
	logSummary                                  logSummary
	loadStart, loadEnd                          string
	soakRSSKB                                   int
	net                                         netWatch
}

// sample is one observation of the three processes.
type sample struct {
	At         time.Duration // since the hold started (negative before)
	Phase      string
	SG         procStat
	SGCPU      float64 // % of one core since the previous sample
	Goroutines int     // floor of goroutinesScrapes scrapes; -1: n/a
	// GoroutinesMax is the highest of those scrapes.
	GoroutinesMax int
	// From the Go collector: heap and stack in use, the next GC target,
	// GC cycles so far.
	HeapInuse, StackInuse, NextGC float64
	GCs                           int64
	Sessions                      int // stompgate_sessions_active, -1: n/a
	BSessions                     int // broker STOMP sessions, -1: n/a
	BConns                        int
	BRSSKB                        int
	BCPU                          float64
	B                             procStat
	Self                          procStat // the soak process (clients)
	Load                          string   // 1-minute load average
	SelfCPU                       float64
	ClientsUp                     int
	Stale                         int
	Unexpected                    int64
	MessagesIn                    int64
	when                          time.Time
}

func (r *run) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "soak %7.1fs: %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, a...))
}

func (r *run) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	r.notes = append(r.notes, s)
	r.logf("NOTE: %s", s)
}

func (r *run) execute(ctx context.Context) int {
	r.loadStart = loadavg()
	if err := r.setup(ctx); err != nil {
		r.setupErr = err
		r.logf("setup failed: %v", err)
		r.stopAll()
		return 2
	}
	nctx, ncancel := context.WithCancel(ctx)
	ndone := make(chan struct{})
	go func() { defer close(ndone); r.net.run(nctx) }()
	r.soak(ctx)
	ncancel()
	<-ndone
	r.stopAll()
	r.logSummary = summarizeLog(r.sgLog, r.rampStart, r.leaveFirst)
	r.loadEnd = loadavg()
	if ps, err := readProc(os.Getpid()); err == nil {
		r.soakRSSKB = ps.RSSKB
	}
	if r.allPass() {
		return 0
	}
	return 1
}

func (r *run) setup(ctx context.Context) error {
	var err error
	if r.root, err = repo.Root(); err != nil {
		return err
	}
	switch r.o.out {
	case "-":
	case "":
		r.outPath = filepath.Join(repo.Bench(r.root), "results", "soak.md")
	default:
		r.outPath = r.o.out
	}
	r.tmp, err = os.MkdirTemp("", "stompgate-soak-")
	if err != nil {
		return err
	}
	bin := r.o.stompgateBin
	if bin == "" {
		bin = filepath.Join(r.tmp, "stompgate")
		r.logf("building stompgate: go build -o %s ./cmd/stompgate", bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/stompgate")
		cmd.Dir = r.root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/stompgate: %v\n%s", err, b)
		}
	}

	// The broker: this program again, as `soak broker`.
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r.brokerLog = filepath.Join(r.tmp, "broker.log")
	blog, err := os.Create(r.brokerLog)
	if err != nil {
		return err
	}
	defer blog.Close()
	bcmd := exec.Command(exe, "broker", "-listen", "127.0.0.1:0", "-heartbeat", r.o.heartbeat.String())
	bcmd.Stderr = blog
	stdout, err := bcmd.StdoutPipe()
	if err != nil {
		return err
	}
	stdin, err := bcmd.StdinPipe()
	if err != nil {
		return err
	}
	r.broker, err = startChild("broker", bcmd)
	if err != nil {
		return err
	}
	r.broker.stdin = stdin
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			ready <- sc.Text()
		}
		close(ready)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-ready:
		addr, found := strings.CutPrefix(line, "READY ")
		if !ok || !found {
			return fmt.Errorf("broker did not start (%q); see %s", line, r.brokerLog)
		}
		r.brokerAddr = addr
	case <-time.After(20 * time.Second):
		return fmt.Errorf("broker did not report READY in 20s; see %s", r.brokerLog)
	case <-ctx.Done():
		return ctx.Err()
	}
	r.logf("broker (pid %d) on ws://%s/ws, heart-beat %v,%v", r.broker.cmd.Process.Pid, r.brokerAddr, r.o.heartbeat, r.o.heartbeat)

	// stompgate.
	if r.sgAddr, err = freePort(); err != nil {
		return err
	}
	if r.admin, err = freePort(); err != nil {
		return err
	}
	if r.pprofAddr, err = freePort(); err != nil {
		return err
	}
	ms := strconv.FormatInt(r.o.heartbeat.Milliseconds(), 10)
	r.sgEnv = []string{
		"STOMPGATE_UPSTREAM_URL=ws://" + r.brokerAddr,
		"STOMPGATE_LISTEN_ADDR=" + r.sgAddr,
		"STOMPGATE_ADMIN_ADDR=" + r.admin,
		"STOMPGATE_UPSTREAM_HEARTBEAT=" + ms + "," + ms,
		"STOMPGATE_CLIENT_HEARTBEAT=" + ms + "," + ms,
		"STOMPGATE_MAX_CONNECTIONS=0",
		// Goroutine dumps at the baseline and at the end, to explain a
		// difference; its listener and connection are in the baseline.
		"STOMPGATE_PPROF_ADDR=" + r.pprofAddr,
		"STOMPGATE_CLOSE_TIMEOUT=" + r.o.closeTimeout.String(),
		// info: one "session ended" line per session, to attribute any
		// unexpected end.
		"STOMPGATE_LOG_LEVEL=info",
		"STOMPGATE_LOG_FORMAT=json",
		// A quick exit at the end (no session is left by then).
		"STOMPGATE_SHUTDOWN_DELAY=0s",
		"STOMPGATE_DRAIN_PERIOD=1s",
		"STOMPGATE_SHUTDOWN_TIMEOUT=5s",
	}
	r.sgEnv = append(r.sgEnv, r.o.env...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STOMPGATE_") {
			env = append(env, kv)
		}
	}
	r.sgLog = filepath.Join(r.tmp, "stompgate.log")
	slog, err := os.Create(r.sgLog)
	if err != nil {
		return err
	}
	defer slog.Close()
	scmd := exec.Command(bin)
	scmd.Env = append(env, r.sgEnv...)
	scmd.Stdout, scmd.Stderr = slog, slog
	if r.sg, err = startChild("stompgate", scmd); err != nil {
		return err
	}
	r.scr, r.bscr, r.pscr = newScraper(), newScraper(), newScraper()
	if err := r.waitReady(ctx); err != nil {
		return err
	}
	r.logf("stompgate (pid %d) on ws://%s, admin http://%s", r.sg.cmd.Process.Pid, r.sgAddr, r.admin)
	return nil
}

// freePort returns a loopback address nobody listens on right now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady waits for stompgate's client port and, if it has one, its
// admin /livez.
func (r *run) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r.sg.exited() {
			return fmt.Errorf("stompgate exited (%v); see %s:\n%s", exitDesc(r.sg.waitErr), r.sgLog, tail(r.sgLog, 20))
		}
		c, err := net.DialTimeout("tcp", r.sgAddr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stompgate does not listen on %s after 20s; see %s", r.sgAddr, r.sgLog)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := r.scr.get(cctx, "http://"+r.admin+"/livez")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			r.note("admin server not reachable at http://%s (%v): goroutines recorded as n/a", r.admin, err)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := r.scr.metrics(cctx, r.admin)
	if err != nil {
		r.metricsErr = err.Error()
		r.note("GET /metrics failed (%v): goroutines recorded as n/a", err)
		return nil
	}
	if _, ok := m.get("go_goroutines"); !ok {
		r.metricsErr = "no go_goroutines series"
		r.note("/metrics has no go_goroutines: goroutines recorded as n/a")
		return nil
	}
	r.metricsOK = true
	return nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// takeSample observes stompgate, the broker and the clients.
func (r *run) takeSample(ctx context.Context, phase string) sample {
	now := time.Now()
	s := sample{Phase: phase, when: now, Goroutines: -1, Sessions: -1, BSessions: -1, BConns: -1}
	s.Load, _, _ = strings.Cut(loadavg(), " ")
	if !r.holdStart.IsZero() {
		s.At = now.Sub(r.holdStart)
	} else if !r.rampStart.IsZero() {
		s.At = now.Sub(r.rampStart)
	}
	if ps, err := readProc(r.sg.cmd.Process.Pid); err == nil {
		s.SG = ps
	}
	if bs, err := readProc(r.broker.cmd.Process.Pid); err == nil {
		s.B = bs
		s.BRSSKB = bs.RSSKB
	}
	if ps, err := readProc(os.Getpid()); err == nil {
		s.Self = ps
	}
	if n := len(r.samples); n > 0 {
		prev := r.samples[n-1]
		if dt := now.Sub(prev.when).Seconds(); dt > 0 {
			s.SGCPU = float64(s.SG.CPUTicks-prev.SG.CPUTicks) / userHZ / dt * 100
			s.BCPU = float64(s.B.CPUTicks-prev.B.CPUTicks) / userHZ / dt * 100
			s.SelfCPU = float64(s.Self.CPUTicks-prev.Self.CPUTicks) / userHZ / dt * 100
		}
	}
	if r.metricsOK {
		// goroutinesScrapes scrapes 200 ms apart: the minimum is the
		// floor of long-lived goroutines (flatness is judged on it), the
		// maximum adds the short-lived ones (timer callbacks, writes)
		// caught in flight.
		for i := range goroutinesScrapes {
			if i > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := r.scr.metrics(cctx, r.admin)
			cancel()
			if err != nil {
				r.logf("GET /metrics: %v", err)
				continue
			}
			if v, ok := m.get("go_goroutines"); ok {
				g := int(v)
				if s.Goroutines < 0 || g < s.Goroutines {
					s.Goroutines = g
				}
				s.GoroutinesMax = max(s.GoroutinesMax, g)
			}
			if i == 0 {
				if v, ok := m.get("stompgate_sessions_active"); ok {
					s.Sessions = int(v)
				}
				s.HeapInuse, _ = m.get("go_memstats_heap_inuse_bytes")
				s.StackInuse, _ = m.get("go_memstats_stack_inuse_bytes")
				s.NextGC, _ = m.get("go_memstats_next_gc_bytes")
				gcs, _ := m.get("go_gc_duration_seconds_count")
				s.GCs = int64(gcs)
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if st, err := r.bscr.brokerStats(cctx, r.brokerAddr); err == nil {
		s.BSessions, s.BConns = st.Sessions, st.Connections
	} else {
		r.logf("broker stats: %v", err)
	}
	cancel()
	if r.pool != nil {
		s.ClientsUp, s.Stale = r.pool.counts()
		s.Unexpected = r.pool.unexpectedClients.Load()
		s.MessagesIn = r.pool.messagesIn.Load()
	}
	r.samples = append(r.samples, s)
	r.logf("%-8s t=%-6s stompgate rss=%.1fMiB heap=%.1fMiB fds=%d threads=%d goroutines=%s-%d sessions=%s cpu=%.0f%% | broker sessions=%s rss=%.1fMiB cpu=%.0f%% | clients up=%d stale=%d unexpected=%d cpu=%.0f%% | load %s",
		phase, fmtDur(s.At), mib(s.SG.RSSKB), s.HeapInuse/(1<<20), s.SG.FDs, s.SG.Threads, na(s.Goroutines), s.GoroutinesMax, na(s.Sessions), s.SGCPU,
		na(s.BSessions), mib(s.BRSSKB), s.BCPU, s.ClientsUp, s.Stale, s.Unexpected, s.SelfCPU, s.Load)
	return s
}

func mib(kb int) float64 { return float64(kb) / 1024 }

func na(v int) string {
	if v < 0 {
		return "n/a"
	}
	return strconv.Itoa(v)
}

func fmtDur(d time.Duration) string {
	neg := d < 0
	if neg {
		d = -d
	}
	s := strconv.FormatFloat(d.Seconds(), 'f', 0, 64) + "s"
	if neg {
		s = "-" + s
	}
	return s
}

// soak runs the phases; whatever happens, it returns with the clients
// gone (or dropped).
func (r *run) soak(ctx context.Context) {
	url := "ws://" + r.sgAddr + "/ws"
	// A priming session first, so that whatever stompgate starts lazily on
	// its first session is part of the baseline.
	prime := newClientPool(url, r.o.heartbeat, r.start)
	if c, err := prime.connect(ctx, -1, 0); err != nil {
		r.note("priming session failed: %v", err)
	} else {
		prime.add(c)
		prime.leave(ctx, 1, 10*time.Second)
	}
	prime.stopHeartbeats()
	r.waitIdle(ctx, 10*time.Second)
	r.dumpGoroutines(ctx, "baseline")
	r.baseline = r.takeSample(ctx, "baseline")
	bctx, bcancel := context.WithTimeout(ctx, 5*time.Second)
	if st, err := r.bscr.brokerStats(bctx, r.brokerAddr); err == nil {
		r.baselineBroker = st
	}
	if r.metricsOK {
		if m, err := r.scr.metrics(bctx, r.admin); err == nil {
			r.baselineMetrics = m
		}
	}
	bcancel()

	r.pool = newClientPool(url, r.o.heartbeat, r.start)
	defer r.pool.closeAll()
	r.rampStart = time.Now()
	r.logf("ramp-up: %d sessions at %.0f/s (%d handshakes in flight at most)", r.o.sessions, r.o.rampRate, r.o.dialConc)
	r.pool.ramp(ctx, r.o.sessions, r.o.rampRate, r.o.dialConc, r.o.topics)
	r.rampEnd = time.Now()
	est := len(r.pool.established())
	r.logf("ramp-up done in %v: %d established, %d failed", r.rampEnd.Sub(r.rampStart).Round(time.Millisecond), est, r.pool.setupFailures.Load())

	// Every SUBSCRIBE registered before the hold (and its trickle) starts.
	subDeadline := time.Now().Add(60 * time.Second)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := r.bscr.brokerStats(cctx, r.brokerAddr)
		cancel()
		up, _ := r.pool.counts()
		if err == nil && st.Subscriptions >= up {
			break
		}
		if time.Now().After(subDeadline) {
			r.note("broker has %d subscriptions 60s after the ramp-up, %d sessions are up", st.Subscriptions, up)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.subsReady = time.Since(r.rampEnd)

	r.holdStart = time.Now()
	r.pool.phase.Store(phaseHold)
	r.logf("hold: %v (warm-up %v), samples every %v", r.o.hold, r.o.warmup, r.o.sampleEvery)
	tctx, tcancel := context.WithCancel(ctx)
	var twg sync.WaitGroup
	twg.Add(1)
	go func() {
		defer twg.Done()
		r.sent, r.expected = r.pool.trickle(tctx, r.o.sendRate)
	}()
	r.takeSample(ctx, "warm-up")
	tick := time.NewTicker(r.o.sampleEvery)
	holdEnd := r.holdStart.Add(r.o.hold)
	for ctx.Err() == nil {
		wait := time.Until(holdEnd)
		if wait <= 0 {
			break
		}
		select {
		case <-tick.C:
		case <-time.After(wait):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		phase := "hold"
		if time.Since(r.holdStart) < r.o.warmup {
			phase = "warm-up"
		}
		if time.Until(holdEnd) <= 0 {
			phase = "hold-end"
		}
		r.takeSample(ctx, phase)
		if r.sg.exited() || r.broker.exited() {
			r.note("a subprocess exited during the hold (stompgate: %v, broker: %v): the hold ends early", r.sg.exited(), r.broker.exited())
			break
		}
	}
	tick.Stop()
	tcancel()
	twg.Wait()
	// Let the last MESSAGEs arrive.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if r.pool.messagesIn.Load() >= r.expected {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.recvd = r.pool.messagesIn.Load()

	// What the other two processes saw before the clients leave.
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if st, err := r.bscr.brokerStats(lctx, r.brokerAddr); err == nil {
		r.preLeaveBroker = st
	}
	if r.metricsOK {
		if m, err := r.scr.metrics(lctx, r.admin); err == nil {
			r.preLeaveMetrics = m
		}
	}
	lcancel()

	// The clients leave; then stompgate must release every session within
	// CLOSE_TIMEOUT.
	leaveCtx, leaveCancel := context.WithTimeout(context.Background(), leaveTimeout+10*time.Second)
	r.logf("clients leave: DISCONNECT (receipt) → RECEIPT → close 1000")
	r.leaveFirst, r.leaveLast, r.left = r.pool.leave(leaveCtx, 64, leaveTimeout)
	leaveCancel()
	if r.leaveLast.IsZero() {
		r.leaveLast = time.Now()
	}
	r.logf("clients gone: %d of %d sessions ended, last %v after the first DISCONNECT",
		r.left, len(r.pool.established()), r.leaveLast.Sub(r.leaveFirst).Round(time.Millisecond))
	r.waitRelease()
	r.takeSample(context.Background(), "released")
	r.dumpGoroutines(context.Background(), "end")
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if r.metricsOK {
		if m, err := r.scr.metrics(fctx, r.admin); err == nil {
			r.finalMetrics = m
		}
	}
	if st, err := r.bscr.brokerStats(fctx, r.brokerAddr); err == nil {
		r.finalBroker = st
	}
	fcancel()
}

// dumpGoroutines saves stompgate's goroutine profile (debug=1: grouped
// by stack, with counts) in the temporary directory.
func (r *run) dumpGoroutines(ctx context.Context, name string) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := r.pscr.get(cctx, "http://"+r.pprofAddr+"/debug/pprof/goroutine?debug=1")
	if err != nil {
		r.logf("goroutine dump %s: %v", name, err)
		return
	}
	path := filepath.Join(r.tmp, "goroutines-"+name+".txt")
	if err := os.WriteFile(path, b, 0o644); err == nil {
		r.dumps = append(r.dumps, path)
	}
}

// waitIdle waits (bounded) until stompgate has no session.
func (r *run) waitIdle(ctx context.Context, d time.Duration) {
	if !r.metricsOK {
		time.Sleep(time.Second)
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := r.scr.metrics(cctx, r.admin)
		cancel()
		if err == nil {
			if v, ok := m.get("stompgate_sessions_active"); ok && v == 0 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let the last session's goroutines return.
	time.Sleep(time.Second)
}

// waitRelease polls stompgate until its goroutines and fds are back to the
// baseline and no session is active, and the broker until it has no
// connection.
func (r *run) waitRelease() {
	pid := r.sg.cmd.Process.Pid
	deadline := r.leaveLast.Add(releaseWait(r.o.closeTimeout))
	var last, prevVals string
	for {
		now := time.Now()
		ps, perr := readProc(pid)
		g, sess := -1, -1
		if r.metricsOK {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if m, err := r.scr.metrics(cctx, r.admin); err == nil {
				if v, ok := m.get("go_goroutines"); ok {
					g = int(v)
				}
				if v, ok := m.get("stompgate_sessions_active"); ok {
					sess = int(v)
				}
			} else {
				r.releaseTrace = append(r.releaseTrace, fmt.Sprintf("%+v: GET /metrics: %v", now.Sub(r.leaveLast).Round(time.Millisecond), err))
			}
			cancel()
		}
		bconns := -1
		if !r.brokerReleased {
			cctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if st, err := r.bscr.brokerStats(cctx, r.brokerAddr); err == nil {
				bconns = st.Connections
				if st.Connections == 0 && st.Sessions == 0 {
					r.brokerReleased = true
					r.brokerReleaseAfterLeft = max(0, now.Sub(r.leaveLast))
				}
			}
			cancel()
		}
		// The baseline is a range (min–max of goroutinesScrapes scrapes of
		// the idle process: scrapes themselves add short-lived goroutines);
		// back to baseline is within it.
		gOK := r.metricsOK && g >= 0 && g <= r.baseline.GoroutinesMax
		fdOK := perr == nil && ps.FDs <= r.baseline.SG.FDs
		sOK := !r.metricsOK || sess == 0
		since := now.Sub(r.leaveLast)
		if sOK && r.sessionsZeroAt == nil {
			r.sessionsZeroAt = &since
		}
		if fdOK && r.fdsBackAt == nil {
			r.fdsBackAt = &since
		}
		if gOK && r.goroutinesBackAt == nil {
			r.goroutinesBackAt = &since
		}
		last = fmt.Sprintf("goroutines %s (baseline %s–%d), fds %d (baseline %d), sessions_active %s",
			na(g), na(r.baseline.Goroutines), r.baseline.GoroutinesMax, ps.FDs, r.baseline.SG.FDs, na(sess))
		// A trace of the polls whose values changed, times relative to the
		// last client's end.
		if vals := fmt.Sprintf("sessions_active %s, goroutines %s, fds %d, broker connections %s", na(sess), na(g), ps.FDs, na(bconns)); vals != prevVals {
			prevVals = vals
			if len(r.releaseTrace) < 80 {
				r.releaseTrace = append(r.releaseTrace, fmt.Sprintf("%+v: %s", since.Round(time.Millisecond), vals))
			}
		}
		if fdOK && sOK && (gOK || !r.metricsOK) && !r.released {
			r.released = true
			r.releaseAfterLeft = max(0, since)
			r.releaseAfterFirst = now.Sub(r.leaveFirst)
			r.releaseResidual = last
			r.logf("stompgate released every session %v after the last client left (%v after the first DISCONNECT): %s",
				r.releaseAfterLeft.Round(time.Millisecond), r.releaseAfterFirst.Round(time.Millisecond), last)
		}
		if (r.released && r.brokerReleased) || now.After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !r.released {
		r.releaseResidual = last
		r.logf("stompgate NOT released %v after the last client left: %s", releaseWait(r.o.closeTimeout), last)
	}
}

// stopAll stops stompgate (SIGTERM) and the broker (stdin closed), in
// order, each bounded.
func (r *run) stopAll() {
	if r.pool != nil {
		r.pool.closeAll()
	}
	if r.sg != nil {
		r.sgStop = r.sg.stop(syscall.SIGTERM, 15*time.Second)
		r.logf("stompgate %s", r.sgStop)
	}
	if r.broker != nil {
		if r.broker.stdin != nil {
			_ = r.broker.stdin.Close()
		}
		r.brokerStop = r.broker.stop(0, 15*time.Second)
		r.logf("broker %s", r.brokerStop)
	}
}

// flat summarises one series over the judged part of the hold.
type flat struct {
	n                   int
	first, last, lo, hi float64
	spreadPct, trendPct float64
	ok                  bool
	absent              bool
}

// judgeFlat: spread (max−min)/min and trend (least-squares slope over the
// window, relative to the mean) must stay within the limits.
func judgeFlat(xs []float64, ts []float64, spreadLimitPct, trendLimitPct, absSlack float64) flat {
	f := flat{n: len(xs)}
	if len(xs) < 2 {
		f.absent = true
		return f
	}
	f.first, f.last = xs[0], xs[len(xs)-1]
	f.lo, f.hi = math.Inf(1), math.Inf(-1)
	var mx, mt float64
	for i, x := range xs {
		f.lo, f.hi = math.Min(f.lo, x), math.Max(f.hi, x)
		mx += x
		mt += ts[i]
	}
	mx /= float64(len(xs))
	mt /= float64(len(xs))
	var num, den float64
	for i, x := range xs {
		num += (ts[i] - mt) * (x - mx)
		den += (ts[i] - mt) * (ts[i] - mt)
	}
	slope := 0.0
	if den > 0 {
		slope = num / den
	}
	window := ts[len(ts)-1] - ts[0]
	if f.lo > 0 {
		f.spreadPct = (f.hi - f.lo) / f.lo * 100
	}
	if mx > 0 {
		f.trendPct = slope * window / mx * 100
	}
	spreadOK := f.spreadPct <= spreadLimitPct || f.hi-f.lo <= absSlack
	trendOK := f.trendPct <= trendLimitPct || slope*window <= absSlack
	f.ok = spreadOK && trendOK
	return f
}
