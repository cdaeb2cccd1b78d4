package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/stompgate/stompgate/bench/internal/repo"
	"github.com/stompgate/stompgate/bench/internal/sysinfo"
)

// The orchestrator: builds stompgate, starts the echo, nginx and stompgate
// pinned to their CPUs, runs every cell in interleaved rounds, measures
// idle sessions, runs the pump micro-benchmark, and prints (and optionally
// writes to a file) the tables.

type runFlags struct {
	rounds      int
	duration    time.Duration
	warmup      time.Duration
	bodies      []int
	conns       []int
	inflight    []int
	idle        int
	hold        time.Duration
	targets     []string
	stealMax    float64
	otherMax    float64
	retryBudget int
	retries     int
	proxyCPU    int
	clientCPU   int
	nginx       string
	report      string
	out         string
	pump        string
	profile     bool
	syscalls    bool
	quick       bool
	command     string
	args        string // this command line
}

type workload struct{ body, conns, inflight int }

func (w workload) String() string {
	return fmt.Sprintf("%s %d×%d", sizeName(w.body), w.conns, w.inflight)
}

// workloads are every combination of body size, connections and messages
// in flight.
func (f runFlags) workloads() []workload {
	var works []workload
	for _, w := range f.inflight {
		for _, b := range f.bodies {
			for _, c := range f.conns {
				works = append(works, workload{b, c, w})
			}
		}
	}
	return works
}

func sizeName(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// cell is one measurement: a workload on a target in a round.
type cell struct {
	Round    int         `json:"round"`
	Target   string      `json:"target"`
	Body     int         `json:"body"`
	Conns    int         `json:"conns"`
	Inflight int         `json:"inflight"`
	Attempts int         `json:"attempts"` // > 1 when steal forced a repeat
	Result   *loadResult `json:"result,omitempty"`
	Err      string      `json:"error,omitempty"`
}

// runner holds the processes of one run.
type runner struct {
	f        runFlags
	root     string // repository root
	self     string // this executable
	out      string // output directory
	sg       string // stompgate binary
	echo     *proc
	echoAddr string
	procs    map[string]*proc // running proxies by target name
	urls     map[string]string
	admin    string // stompgate admin address
	pprof    string // stompgate pprof address ("" unless -profile)
	log      io.Writer
}

func runMain(args []string) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var f runFlags
	var bodies, conns, targets, inflight string
	fs.IntVar(&f.rounds, "rounds", 3, "interleaved rounds")
	fs.DurationVar(&f.duration, "duration", 2500*time.Millisecond, "measured window of each cell")
	fs.DurationVar(&f.warmup, "warmup", 750*time.Millisecond, "warm-up of each cell")
	fs.StringVar(&bodies, "bodies", "64,1024,16384", "STOMP body sizes (bytes)")
	fs.StringVar(&conns, "conns", "50,500", "connection counts")
	fs.StringVar(&inflight, "inflight", "1,4", "messages in flight per connection (a list: each is a workload)")
	fs.IntVar(&f.idle, "idle", 9900, "idle STOMP sessions for the RSS measurement (0: skip)")
	fs.DurationVar(&f.hold, "hold", 15*time.Second, "how long the idle sessions are held")
	fs.StringVar(&targets, "targets", "direct,nginx,stompgate", "targets: direct, nginx, stompgate, and the floors tunnel-goroutine, tunnel-epoll (bench/cmd/tunnel)")
	fs.Float64Var(&f.stealMax, "steal-max", 0.02, "repeat a cell whose CPU steal exceeds this fraction")
	fs.IntVar(&f.retries, "retries", 2, "repeats allowed per cell when it was disturbed (steal, other load)")
	fs.Float64Var(&f.otherMax, "other-max", 0.10, "repeat a cell when other processes used more than this fraction of a pinned CPU")
	fs.IntVar(&f.retryBudget, "retry-budget", 0, "repeats allowed in the whole run (0: one sixth of the cells), to stay within the time bound")
	fs.IntVar(&f.proxyCPU, "proxy-cpu", 0, "CPU every proxy is pinned to")
	fs.IntVar(&f.clientCPU, "client-cpu", 1, "CPU of the load generator and the echo")
	fs.StringVar(&f.nginx, "nginx", "/usr/sbin/nginx", "nginx binary")
	fs.StringVar(&f.report, "report", "", "also write the markdown report to this file (make bench: results/bench.md)")
	fs.StringVar(&f.out, "out", "", "directory for raw results, logs and configs (default: a new temp dir)")
	fs.StringVar(&f.pump, "pump-benchtime", "20000x", "benchtime of the pump micro-benchmark (go test ./proxy/); empty: skip")
	fs.BoolVar(&f.syscalls, "syscalls", true, "count each proxy's system calls with perf stat in extra cells (first body size, first connection count), when perf is installed")
	fs.BoolVar(&f.profile, "profile", false, "also capture stompgate CPU profiles (extra cells, not in the table) and a heap profile of the idle sessions")
	fs.BoolVar(&f.quick, "quick", false, "short development run: 1 round of 1 s cells, 64 B and 16 KiB at 50 connections, 1,000 idle sessions")
	fs.StringVar(&f.command, "command", "", "how the run was invoked, for the report (default: this command line)")
	fs.Parse(args)
	if f.quick {
		// Quick defaults; flags given explicitly still win.
		set := map[string]bool{}
		fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		quick := map[string]func(){
			"rounds":         func() { f.rounds = 1 },
			"duration":       func() { f.duration = time.Second },
			"warmup":         func() { f.warmup = 300 * time.Millisecond },
			"bodies":         func() { bodies = "64,16384" },
			"conns":          func() { conns = "50" },
			"idle":           func() { f.idle = 1000 },
			"hold":           func() { f.hold = 3 * time.Second },
			"pump-benchtime": func() { f.pump = "2000x" },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if f.bodies, err = intList(bodies); err != nil {
		return fail(err)
	}
	if f.conns, err = intList(conns); err != nil {
		return fail(err)
	}
	if f.inflight, err = intList(inflight); err != nil {
		return fail(err)
	}
	f.targets = strings.Split(targets, ",")
	f.args = "cd bench && go run ./cmd/stompbench run " + strings.Join(args, " ")
	if f.command == "" {
		f.command = f.args
	}
	r := &runner{f: f, procs: map[string]*proc{}, urls: map[string]string{}, log: os.Stderr}
	rc := r.main()
	return rc
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "stompbench:", err)
	return 1
}

func intList(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("bad number %q", p)
		}
		out = append(out, n)
	}
	return out, nil
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r *runner) main() int {
	start := time.Now()
	// Stop everything on Ctrl-C: each child is ours.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		r.logf("interrupted: stopping")
		r.stopAll()
		os.Exit(130)
	}()
	defer r.stopAll()
	if err := r.setup(); err != nil {
		return fail(err)
	}
	env := machineInfo(r.f.nginx)
	env.Command = r.f.command
	r.logf("output in %s", r.out)

	cells, err := r.cells()
	if err != nil {
		return fail(err)
	}
	var idles []idleResult
	if r.f.idle > 0 {
		for _, t := range r.f.targets {
			if t == "direct" {
				continue
			}
			res, err := r.idleRun(t)
			if err != nil {
				r.logf("idle %s: %v", t, err)
				idles = append(idles, idleResult{Target: t, Sessions: r.f.idle, FirstErr: err.Error()})
				continue
			}
			idles = append(idles, *res)
		}
	}
	var perfCells []cell
	if r.f.syscalls || r.f.profile {
		perfCells = r.syscallCells()
	}
	if r.f.profile {
		r.cpuProfiles()
	}
	r.stopAll()
	var pump string
	if r.f.pump != "" {
		pump = r.pumpBench()
	}
	env.Elapsed = time.Since(start).Round(time.Second).String()
	env.LoadEnd = sysinfo.LoadAvg()

	raw, _ := json.MarshalIndent(struct {
		Machine machineEnv   `json:"machine"`
		Cells   []cell       `json:"cells"`
		Idle    []idleResult `json:"idle"`
		Perf    []cell       `json:"perf,omitempty"`
	}{env, cells, idles, perfCells}, "", "  ")
	os.WriteFile(filepath.Join(r.out, "results.json"), raw, 0o644)

	md := report(r.f, env, cells, idles, pump, perfCells)
	fmt.Println(md)
	os.WriteFile(filepath.Join(r.out, "report.md"), []byte(md), 0o644)
	if r.f.report != "" {
		if err := writeReport(r.f.report, md); err != nil {
			return fail(err)
		}
		r.logf("wrote %s", r.f.report)
	}
	r.logf("done in %s; raw results in %s", env.Elapsed, filepath.Join(r.out, "results.json"))
	return 0
}

func (r *runner) setup() error {
	if runtime.GOOS != "linux" {
		return errors.New("needs Linux (/proc, taskset)")
	}
	if runtime.NumCPU() < 2 {
		return errors.New("needs at least 2 CPUs")
	}
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(clkTck) {
		return fmt.Errorf("getconf CLK_TCK = %q, expected %d", strings.TrimSpace(string(out)), clkTck)
	}
	for _, bin := range []string{"taskset", r.f.nginx} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (bash bench/deps.sh installs it)", bin)
		}
	}
	var err error
	if r.self, err = os.Executable(); err != nil {
		return err
	}
	if r.root, err = repo.Root(); err != nil {
		return err
	}
	r.out = r.f.out
	if r.out == "" {
		if r.out, err = os.MkdirTemp("", "stompbench-"+time.Now().Format("20060102-150405")+"-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(r.out, 0o755); err != nil {
		return err
	}
	r.sg = filepath.Join(r.out, "stompgate")
	r.logf("building stompgate")
	build := exec.Command("go", "build", "-o", r.sg, "./cmd/stompgate")
	build.Dir = r.root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/stompgate: %w", err)
	}
	if err := r.startEcho(); err != nil {
		return err
	}
	for _, t := range r.f.targets {
		if err := r.startTarget(t); err != nil {
			return err
		}
	}
	return nil
}

// proc is a child process pinned to a CPU.
type proc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// serving records a started proxy under name and waits until it listens
// on listen; use as r.serving(name, listen)(r.start(...)).
func (r *runner) serving(name, listen string) func(*proc, error) error {
	return func(p *proc, err error) error {
		if err != nil {
			return err
		}
		r.procs[name] = p
		if err := waitTCP(listen, p, 10*time.Second); err != nil {
			return err
		}
		r.urls[name] = "ws://" + listen + "/ws"
		return nil
	}
}

func (r *runner) start(name string, cpu int, env []string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), bin}, args...)...)
	cmd.Env = env
	logf, err := os.Create(filepath.Join(r.out, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = logf
	}
	// The child dies with us even if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends sig, waits up to 5 s, then kills the process and, for nginx,
// its workers.
func (p *proc) stop(sig syscall.Signal) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	kids := children(p.cmd.Process.Pid)
	p.cmd.Process.Signal(sig)
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	for _, k := range kids {
		if pr, err := os.FindProcess(k); err == nil {
			pr.Kill()
		}
	}
}

func (r *runner) stopAll() {
	for name, p := range r.procs {
		if name == "nginx" {
			p.stop(syscall.SIGTERM)
		} else {
			p.stop(syscall.SIGKILL)
		}
		delete(r.procs, name)
	}
	if r.echo != nil {
		r.echo.stop(syscall.SIGKILL)
		r.echo = nil
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitTCP(addr string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (see %s.log)", p.name, p.name)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing listens on %s after %s", p.name, addr, timeout)
}

func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STOMPGATE_") && !strings.HasPrefix(kv, "GOMAXPROCS=") && !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	return append(env, "GOMAXPROCS=1")
}

func (r *runner) startEcho() error {
	pr, pw := io.Pipe()
	p, err := r.start("echo", r.f.clientCPU, baseEnv(), pw, r.self, "echo", "-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.echo = p
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, pr)
	}()
	select {
	case l := <-line:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			return fmt.Errorf("echo said %q", l)
		}
		r.echoAddr = addr
	case <-time.After(10 * time.Second):
		return errors.New("echo did not start")
	}
	r.urls["direct"] = "ws://" + r.echoAddr + "/ws"
	return nil
}

const nginxConf = `# stompbench: nginx as a WebSocket reverse proxy in front of the echo.
worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;

events {
    worker_connections 25000;  # nginx starts reusing connections when fewer than 1/16 are free
}

http {
    access_log off;
    client_body_temp_path {{.Dir}}/client_body_temp;
    proxy_temp_path {{.Dir}}/proxy_temp;
    fastcgi_temp_path {{.Dir}}/fastcgi_temp;
    uwsgi_temp_path {{.Dir}}/uwsgi_temp;
    scgi_temp_path {{.Dir}}/scgi_temp;

    server {
        listen {{.Listen}};
        location / {
            proxy_pass http://{{.Echo}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
`

func (r *runner) startTarget(name string) error {
	switch name {
	case "direct":
		return nil
	case "nginx":
		port, err := freePort()
		if err != nil {
			return err
		}
		dir := filepath.Join(r.out, "nginx")
		os.MkdirAll(dir, 0o755)
		// The worker runs as nobody: it must be able to enter the directory.
		os.Chmod(r.out, 0o755)
		os.Chmod(dir, 0o755)
		listen := "127.0.0.1:" + strconv.Itoa(port)
		var conf bytes.Buffer
		template.Must(template.New("nginx").Parse(nginxConf)).Execute(&conf, map[string]string{"Dir": dir, "Listen": listen, "Echo": r.echoAddr})
		confPath := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
			return err
		}
		return r.serving(name, listen)(r.start("nginx", r.f.proxyCPU, baseEnv(), nil, r.f.nginx, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath))
	case "stompgate":
		port, err := freePort()
		if err != nil {
			return err
		}
		aport, err := freePort()
		if err != nil {
			return err
		}
		listen := "127.0.0.1:" + strconv.Itoa(port)
		r.admin = "127.0.0.1:" + strconv.Itoa(aport)
		env := append(baseEnv(),
			"STOMPGATE_UPSTREAM_URL=ws://"+r.echoAddr,
			"STOMPGATE_LISTEN_ADDR="+listen,
			"STOMPGATE_ADMIN_ADDR="+r.admin,
			"STOMPGATE_LOG_LEVEL=warn",
			"STOMPGATE_MAX_CONNECTIONS=0",
		)
		if r.f.profile {
			pp, err := freePort()
			if err != nil {
				return err
			}
			r.pprof = "127.0.0.1:" + strconv.Itoa(pp)
			env = append(env, "STOMPGATE_PPROF_ADDR="+r.pprof)
		}
		return r.serving(name, listen)(r.start("stompgate", r.f.proxyCPU, env, nil, r.sg))
	case "tunnel-goroutine", "tunnel-epoll":
		// bench/cmd/tunnel: byte tunnels that are the floors of a Go
		// proxy's cost (tunnel.go there).
		bin := filepath.Join(r.out, "tunnel")
		if _, err := os.Stat(bin); err != nil {
			build := exec.Command("go", "build", "-o", bin, "./cmd/tunnel")
			build.Dir = repo.Bench(r.root)
			build.Stdout, build.Stderr = os.Stderr, os.Stderr
			if err := build.Run(); err != nil {
				return fmt.Errorf("go build ./cmd/tunnel: %w", err)
			}
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		listen := "127.0.0.1:" + strconv.Itoa(port)
		args := []string{"-listen", listen, "-upstream", r.echoAddr, "-mode", strings.TrimPrefix(name, "tunnel-")}
		return r.serving(name, listen)(r.start(name, r.f.proxyCPU, baseEnv(), nil, bin, args...))
	}
	return fmt.Errorf("unknown target %q", name)
}

// pids are the processes whose CPU and memory count as the proxy's.
func (r *runner) pids(target string) []int {
	p := r.procs[target]
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	out := []int{pid}
	if target == "nginx" {
		for range 100 {
			if kids := children(pid); len(kids) > 0 {
				return append(out, kids...)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// load runs one load generator process and decodes its JSON.
func (r *runner) load(target string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.f.warmup+r.f.duration+r.f.hold+3*time.Minute)
	defer cancel()
	args = append([]string{"-c", strconv.Itoa(r.f.clientCPU), r.self, "load", "-url", r.urls[target],
		"-pids", joinInts(r.pids(target)), "-client-pids", strconv.Itoa(r.echo.cmd.Process.Pid), "-proxy-cpu", strconv.Itoa(r.f.proxyCPU), "-client-cpu", strconv.Itoa(r.f.clientCPU)}, args...)
	cmd := exec.CommandContext(ctx, "taskset", args...)
	cmd.Env = baseEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load generator: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (r *runner) cellOnce(target string, w workload, extra ...string) (*loadResult, error) {
	out, err := r.load(target, append([]string{"-conns", strconv.Itoa(w.conns), "-inflight", strconv.Itoa(w.inflight),
		"-size", strconv.Itoa(w.body), "-warmup", r.f.warmup.String(), "-duration", r.f.duration.String()}, extra...)...)
	if err != nil {
		return nil, err
	}
	var res loadResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("load generator output %q: %v", out, err)
	}
	res.Target = target
	return &res, nil
}

func (r *runner) cells() ([]cell, error) {
	works := r.f.workloads()
	var cells []cell
	retries, budget := 0, r.f.retryBudget
	if budget <= 0 {
		budget = max(1, len(works)*len(r.f.targets)*r.f.rounds/6)
	}
	n := len(r.f.targets)
	for round := range r.f.rounds {
		for _, w := range works {
			for i := range n {
				t := r.f.targets[(i+round)%n]
				c := cell{Round: round + 1, Target: t, Body: w.body, Conns: w.conns, Inflight: w.inflight}
				for c.Attempts < 1+r.f.retries {
					c.Attempts++
					res, err := r.cellOnce(t, w)
					if err != nil {
						c.Err, c.Result = err.Error(), nil
						r.logf("round %d %s %s: %v", round+1, w, t, err)
						if p := r.procs[t]; p != nil {
							select {
							case <-p.done:
								return cells, fmt.Errorf("%s died (see %s)", t, filepath.Join(r.out, t+".log"))
							default:
							}
						}
						break
					}
					r.logf("round %d %-12s %-9s %8.0f rt/s %7.2f µs/rt  p50 %6.0f p99 %7.0f µs  proxy %3.0f%%  client CPU %3.0f%% (other %2.0f%%/%2.0f%%, steal %.1f%%)  errors %d",
						round+1, w, t, res.Rate, res.CPUPerRT, res.P50, res.P99, 100*res.ProxyUse, 100*res.Client,
						100*res.OtherProxyCPU, 100*res.OtherClientCPU, 100*res.Steal, res.Errors)
					// Keep the least disturbed attempt.
					if c.Result == nil || r.disturbance(t, res) < r.disturbance(t, c.Result) {
						c.Result = res
					}
					why := r.disturbed(t, res)
					if why == "" {
						break
					}
					if retries >= budget {
						r.logf("  disturbed (%s), retry budget of %d used up: kept", why, budget)
						break
					}
					if c.Attempts < 1+r.f.retries {
						retries++
						r.logf("  disturbed (%s): repeating", why)
					}
				}
				cells = append(cells, c)
			}
		}
	}
	return cells, nil
}

// disturbed says why a cell's figures are not to be trusted: CPU steal, or
// other processes on the pinned CPUs.
func (r *runner) disturbed(target string, res *loadResult) string {
	var why []string
	if res.Steal > r.f.stealMax {
		why = append(why, fmt.Sprintf("steal %.1f%%", 100*res.Steal))
	}
	if target != "direct" && res.OtherProxyCPU > r.f.otherMax {
		why = append(why, fmt.Sprintf("other processes used %.0f%% of the proxy CPU", 100*res.OtherProxyCPU))
	}
	if res.OtherClientCPU > r.f.otherMax {
		why = append(why, fmt.Sprintf("other processes used %.0f%% of the client CPU", 100*res.OtherClientCPU))
	}
	return strings.Join(why, ", ")
}

func (r *runner) disturbance(target string, res *loadResult) float64 {
	d := res.Steal + res.OtherClientCPU
	if target != "direct" {
		d += res.OtherProxyCPU
	}
	return d
}

// idleRun restarts target fresh and measures RSS per idle session.
func (r *runner) idleRun(target string) (*idleResult, error) {
	if p := r.procs[target]; p != nil {
		if target == "nginx" {
			p.stop(syscall.SIGTERM)
		} else {
			p.stop(syscall.SIGKILL)
		}
		delete(r.procs, target)
	}
	if err := r.startTarget(target); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	args := []string{"-idle", strconv.Itoa(r.f.idle), "-hold", r.f.hold.String(), "-dial-concurrency", "32"}
	var fetch []string
	metricsFile := filepath.Join(r.out, "idle-metrics.txt")
	if target == "stompgate" {
		fetch = append(fetch, "http://"+r.admin+"/metrics="+metricsFile)
		if r.pprof != "" {
			fetch = append(fetch, "http://"+r.pprof+"/debug/pprof/heap?gc=1="+filepath.Join(r.out, "idle-heap.pprof"),
				"http://"+r.pprof+"/debug/pprof/goroutine="+filepath.Join(r.out, "idle-goroutine.pprof"))
		}
		args = append(args, "-fetch", strings.Join(fetch, ","))
	}
	r.logf("idle: %d sessions through %s, held %s", r.f.idle, target, r.f.hold)
	out, err := r.load(target, args...)
	if err != nil {
		return nil, err
	}
	var res idleResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("load generator output %q: %v", out, err)
	}
	res.Target = target
	if target == "stompgate" {
		res.Go = goMetrics(metricsFile)
	}
	r.logf("idle %s: %d sessions, %.1f KiB RSS each (base %.1f MiB, end %.1f MiB), lost %d",
		target, res.Sessions, res.PerSession/1024, float64(res.BaseRSS)/(1<<20), float64(res.EndRSS)/(1<<20), res.Lost)
	return &res, nil
}

// goMetrics picks the Go runtime's figures out of a /metrics scrape.
func goMetrics(path string) map[string]float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
			"go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes", "process_resident_memory_bytes",
			"stompgate_sessions_active", "go_memstats_next_gc_bytes":
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// syscallCells runs extra cells, not in the main table, with perf stat
// counting each proxy's system calls (perf slows them down a little): at
// the first connection count, for the first body size (every size with
// -profile).
func (r *runner) syscallCells() []cell {
	var out []cell
	if _, err := exec.LookPath("perf"); err != nil {
		r.logf("perf not found: no system call counts")
	} else {
		for _, w := range r.f.workloads() {
			if w.conns != r.f.conns[0] || (!r.f.profile && w.body != r.f.bodies[0]) {
				continue
			}
			for _, t := range r.f.targets {
				if t == "direct" || r.procs[t] == nil {
					continue
				}
				c := cell{Target: t, Body: w.body, Conns: w.conns, Inflight: w.inflight, Attempts: 1}
				res, err := r.cellOnce(t, w, "-perf")
				if err != nil {
					c.Err = err.Error()
					r.logf("perf %s %s: %v", w, t, err)
				} else {
					c.Result = res
					r.logf("perf %-12s %-9s %8.0f rt/s, per round trip: %s", w, t, res.Rate, fmtSyscalls(res.Syscalls))
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// cpuProfiles runs extra cells, not in the main table, with stompgate under
// its CPU profiler.
func (r *runner) cpuProfiles() {
	if r.pprof == "" || r.procs["stompgate"] == nil {
		return
	}
	for _, w := range r.f.workloads() {
		if w.conns != r.f.conns[0] {
			continue
		}
		file := filepath.Join(r.out, fmt.Sprintf("cpu-%d-%dx%d.pprof", w.body, w.conns, w.inflight))
		done := make(chan error, 1)
		go func() {
			time.Sleep(r.f.warmup + 300*time.Millisecond)
			secs := max(1, int(r.f.duration.Seconds()))
			done <- fetchTo(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", r.pprof, secs), file)
		}()
		res, err := r.cellOnce("stompgate", w)
		if err == nil {
			r.logf("profile cell %s: %.0f rt/s %.2f µs/rt", w, res.Rate, res.CPUPerRT)
		}
		if err := <-done; err != nil {
			r.logf("profile %s: %v", w, err)
		} else {
			r.logf("CPU profile: %s", file)
		}
	}
}

func fmtSyscalls(m map[string]float64) string {
	return fmt.Sprintf("read %.2f, write %.2f, epoll %.2f, futex %.2f, all %.2f", m["read"], m["write"], m["epoll"], m["futex"], m["all"])
}

// pumpBench runs the proxy package's pump micro-benchmark.
func (r *runner) pumpBench() string {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^BenchmarkPump", "-benchmem", "-count", "1", "-benchtime", r.f.pump, "./proxy/")
	cmd.Dir = r.root
	r.logf("running %s", strings.Join(cmd.Args, " "))
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.logf("pump benchmark: %v\n%s", err, out)
		return "pump benchmark failed: " + err.Error() + "\n" + string(out)
	}
	return string(out)
}

// machineEnv describes where and when the run happened.
type machineEnv struct {
	Date      string `json:"date"`
	Uname     string `json:"uname"`
	CPU       string `json:"cpu"`
	NProc     int    `json:"nproc"`
	Go        string `json:"go"`
	Nginx     string `json:"nginx"`
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
	Command   string `json:"command"`
	Elapsed   string `json:"elapsed"`
}

func machineInfo(nginx string) machineEnv {
	m := machineEnv{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), NProc: runtime.NumCPU(), Go: runtime.Version(), LoadStart: sysinfo.LoadAvg()}
	if out, err := exec.Command("uname", "-a").Output(); err == nil {
		m.Uname = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		m.NProc, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command(nginx, "-v").CombinedOutput(); err == nil {
		m.Nginx = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
	}
	return m
}
