package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The kernel's own record of packets it dropped or had to send again on
// this machine. A heart-beat the broker wrote but stompgate never read in
// time is either late in a process or lost in the kernel; these counters
// tell the two apart. On loopback a packet is lost only when the receiving
// CPU's input backlog is full (softnet "dropped", net.core.netdev_max_backlog)
// or a socket's receive queue cannot take it (TCPRcvQDrop); TCP then sends
// it again after its retransmission timeout (TCPTimeouts), which a loaded
// machine inflates with every round trip it delays.
var lossCounters = []string{
	"softnet_dropped",       // /proc/net/softnet_stat, column 2, all CPUs
	"TcpExt:TCPRcvQDrop",    // segments dropped: receive queue full
	"TcpExt:RcvPruned",      // segments pruned from a receive queue
	"TcpExt:TCPBacklogDrop", // segments dropped: socket backlog full
	"TcpExt:TCPTimeouts",    // retransmission timeouts that fired
}

// Counted too, but not losses: a loss probe resends the last segment when
// its ACK is late, and a squeeze is a softirq pass that ran out of budget.
var otherCounters = []string{
	"softnet_squeezed",      // /proc/net/softnet_stat, column 3
	"Tcp:RetransSegs",       // all retransmitted segments
	"TcpExt:TCPLossProbes",  // tail loss probes sent
	"TcpExt:DelayedACKLost", // a resent segment met a delayed ACK
}

// netCounters reads every counter of lossCounters and otherCounters.
func netCounters() (map[string]int64, error) {
	out := map[string]int64{}
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		d, _ := strconv.ParseInt(f[1], 16, 64)
		s, _ := strconv.ParseInt(f[2], 16, 64)
		out["softnet_dropped"] += d
		out["softnet_squeezed"] += s
	}
	for _, path := range []string{"/proc/net/snmp", "/proc/net/netstat"} {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		parseSNMP(b, out)
	}
	return out, nil
}

// parseSNMP reads /proc/net/snmp or /proc/net/netstat: pairs of lines, a
// header "Prefix: name name ..." and then "Prefix: value value ...".
func parseSNMP(b []byte, out map[string]int64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var names []string
	var prefix string
	for sc.Scan() {
		p, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if p != prefix || names == nil {
			prefix, names = p, f
			continue
		}
		for i, v := range f {
			if i < len(names) {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					out[p+":"+names[i]] = n
				}
			}
		}
		names = nil
	}
}

// netWatch samples the counters every second while the soak runs and keeps
// the wall-clock seconds in which a loss counter grew, so that the report
// can set them beside the times of unexpected session ends.
type netWatch struct {
	mu     sync.Mutex
	first  map[string]int64
	last   map[string]int64
	losses []string // "15:04:05 softnet_dropped +3, ..." (bounded)
	err    error
}

const maxLossSeconds = 50

func (w *netWatch) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		now := time.Now()
		c, err := netCounters()
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.mu.Unlock()
			return
		}
		if w.first == nil {
			w.first = c
		} else {
			var grew []string
			for _, k := range lossCounters {
				if d := c[k] - w.last[k]; d > 0 {
					grew = append(grew, fmt.Sprintf("%s +%d", k, d))
				}
			}
			if len(grew) > 0 && len(w.losses) < maxLossSeconds {
				w.losses = append(w.losses, now.Format("15:04:05")+" "+strings.Join(grew, ", "))
			}
		}
		w.last = c
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// summary: each counter's growth over the watch, and the seconds with
// losses.
func (w *netWatch) summary() (growth string, losses []string, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || w.first == nil {
		return "", nil, w.err
	}
	var parts []string
	for _, k := range append(append([]string(nil), lossCounters...), otherCounters...) {
		parts = append(parts, fmt.Sprintf("%s %+d", k, w.last[k]-w.first[k]))
	}
	return strings.Join(parts, ", "), append([]string(nil), w.losses...), nil
}
