//go:build !(linux && (amd64 || arm64 || 386 || arm || riscv64 || s390x || loong64))

package tcpinfo

import "time"

// ReceiveQueue reports false: see tcpinfo_linux.go.
func ReceiveQueue(uintptr) (int, bool) { return 0, false }

// SendQueue reports false: see tcpinfo_linux.go.
func SendQueue(uintptr) (int, bool) { return 0, false }

// LastDataReceived reports false: see tcpinfo_linux.go.
func LastDataReceived(uintptr) (time.Duration, bool) { return 0, false }
