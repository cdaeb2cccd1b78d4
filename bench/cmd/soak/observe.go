package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/stompgate/stompgate/bench/internal/sysinfo"
)

// procStat is what /proc says about one process.
type procStat struct {
	RSSKB    int   // VmRSS
	Threads  int   // Threads
	FDs      int   // entries of /proc/<pid>/fd
	CPUTicks int64 // utime + stime, in USER_HZ ticks
}

// userHZ is the unit of /proc/<pid>/stat times; 100 on every Linux
// architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

func readProc(pid int) (procStat, error) {
	var ps procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	ps.RSSKB, ps.Threads = parseStatus(status)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	ps.CPUTicks = parseStatCPU(stat)
	d, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return ps, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return ps, err
	}
	ps.FDs = len(names)
	return ps, nil
}

// parseStatus reads VmRSS (kB) and Threads from /proc/<pid>/status.
func parseStatus(b []byte) (rssKB, threads int) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rssKB, _ = strconv.Atoi(f[0])
		case "Threads":
			threads, _ = strconv.Atoi(f[0])
		}
	}
	return rssKB, threads
}

// parseStatCPU returns utime+stime (fields 14 and 15) of /proc/<pid>/stat.
// The command name (field 2) may contain spaces, so fields are counted from
// the last ')'.
func parseStatCPU(b []byte) int64 {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14 → f[11], stime f[12].
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// promSample is one scrape of a Prometheus text exposition: series
// ("name{labels}" exactly as exposed) to value.
type promSample map[string]float64

// parseProm parses the Prometheus text format well enough for the series
// stompgate exposes: comments skipped, "name{labels} value [timestamp]".
func parseProm(b []byte) promSample {
	out := promSample{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the series; label values may contain spaces,
		// so split after the closing brace when there is one.
		series, rest := line, ""
		if j := strings.LastIndexByte(line, '}'); j >= 0 {
			series, rest = line[:j+1], strings.TrimSpace(line[j+1:])
		} else if k := strings.IndexByte(line, ' '); k >= 0 {
			series, rest = line[:k], strings.TrimSpace(line[k+1:])
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[series] = v
	}
	return out
}

// get returns the value of an unlabelled series.
func (p promSample) get(name string) (float64, bool) {
	v, ok := p[name]
	return v, ok
}

// byLabels returns the series of one metric family, keyed by their label
// set (the text between the braces), sorted by key.
func (p promSample) byLabels(name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range p {
		if strings.HasPrefix(k, name+"{") && strings.HasSuffix(k, "}") {
			out[k[len(name)+1:len(k)-1]] = v
		}
	}
	return out
}

// sum adds every series of a metric family.
func (p promSample) sum(name string) float64 {
	var t float64
	for _, v := range p.byLabels(name) {
		t += v
	}
	if v, ok := p[name]; ok {
		t += v
	}
	return t
}

// scraper reads one HTTP endpoint over a single kept-alive connection, so
// that the scrapes themselves add a constant (and not a varying) number of
// connections and goroutines to what they measure.
type scraper struct {
	client *http.Client
}

func newScraper() *scraper {
	return &scraper{client: &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			// IdleConnTimeout 0: the connection is kept for the whole run.
			DisableCompression: true,
		},
		Timeout: 5 * time.Second,
	}}
}

func (s *scraper) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

func (s *scraper) metrics(ctx context.Context, adminAddr string) (promSample, error) {
	b, err := s.get(ctx, "http://"+adminAddr+"/metrics")
	if err != nil {
		return nil, err
	}
	return parseProm(b), nil
}

func (s *scraper) brokerStats(ctx context.Context, brokerAddr string) (brokerStats, error) {
	var st brokerStats
	b, err := s.get(ctx, "http://"+brokerAddr+"/soak/stats")
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

// machine describes where the soak ran.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				if f := strings.Fields(v); len(f) > 0 {
					if kb, err := strconv.Atoi(f[0]); err == nil {
						mem = fmt.Sprintf(", %.1f GiB RAM", float64(kb)/(1<<20))
					}
				}
				break
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs%s%s, %s %s/%s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// loadavg is the first three fields of /proc/loadavg, "n/a" when unknown.
func loadavg() string {
	if l := sysinfo.LoadAvg(); l != "" {
		return l
	}
	return "n/a"
}

// openFileLimit is RLIMIT_NOFILE's soft limit as this process sees it.
func openFileLimit() string {
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) >= 2 {
				return f[0] + " (hard " + f[1] + ")"
			}
		}
	}
	return "n/a"
}
