package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// perfEvents are the system calls counted with -perf, by group.
var perfEvents = map[string][]string{
	"read":  {"syscalls:sys_enter_read", "syscalls:sys_enter_readv", "syscalls:sys_enter_recvfrom", "syscalls:sys_enter_recvmsg"},
	"write": {"syscalls:sys_enter_write", "syscalls:sys_enter_writev", "syscalls:sys_enter_sendto", "syscalls:sys_enter_sendmsg"},
	"epoll": {"syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait", "syscalls:sys_enter_epoll_pwait2"},
	"futex": {"syscalls:sys_enter_futex"},
	"all":   {"raw_syscalls:sys_enter"},
}

// perfStat counts pids' system calls with `perf stat` until stop is called.
type perfStat struct {
	cmd  *exec.Cmd
	file string
}

func startPerf(pids []int) (*perfStat, error) {
	f, err := os.CreateTemp("", "stompbench-perf-*.csv")
	if err != nil {
		return nil, err
	}
	f.Close()
	var events []string
	for _, evs := range perfEvents {
		events = append(events, evs...)
	}
	cmd := exec.Command("perf", "stat", "-x", ",", "-o", f.Name(), "-e", strings.Join(events, ","), "-p", joinInts(pids))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	time.Sleep(100 * time.Millisecond) // let it attach
	return &perfStat{cmd: cmd, file: f.Name()}, nil
}

// stop ends the count and returns it by group.
func (p *perfStat) stop() (map[string]float64, error) {
	defer os.Remove(p.file)
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	b, err := os.ReadFile(p.file)
	if err != nil {
		return nil, err
	}
	byEvent := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			byEvent[f[2]] += v
		}
	}
	if len(byEvent) == 0 {
		return nil, fmt.Errorf("perf stat counted nothing: %s", strings.TrimSpace(string(b)))
	}
	out := map[string]float64{}
	for group, evs := range perfEvents {
		for _, e := range evs {
			out[group] += byEvent[e]
		}
	}
	return out, nil
}
