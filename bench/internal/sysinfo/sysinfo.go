// Package sysinfo reads what the bench commands report about the machine
// they ran on.
package sysinfo

import (
	"os"
	"strings"
)

// LoadAvg is the first three fields of /proc/loadavg ("1.02 0.80 0.41"),
// or "" when they cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
