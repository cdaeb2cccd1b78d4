//go:build linux

package wsconn

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// The two benchmarks below price a heart-beat write against the system call
// boundary alone, to tell how much of stompgate's heart-beat cost batching
// system calls (io_uring) or a user-space timer wheel could remove: the
// soak's CPU profile is ~60 % sendto (bench/history.md, "Soak").
//
//	go test -run '^$' -bench 'KernelEntry|SendEOL' -count 5 ./internal/wsconn/

// BenchmarkKernelEntry is the cheapest system call, getppid(2): the price of
// entering and leaving the kernel with this machine's mitigations.
func BenchmarkKernelEntry(b *testing.B) {
	for b.Loop() {
		syscall.RawSyscall(syscall.SYS_GETPPID, 0, 0, 0)
	}
}

// BenchmarkSendEOLLoopback is one STOMP heart-beat as stompgate writes it to
// a client (an unmasked text frame holding "\n": 3 bytes, one sendto) on a
// loopback TCP connection whose peer reads in its own goroutine, as the
// soak's clients do.
func BenchmarkSendEOLLoopback(b *testing.B) {
	c, peer := tcpPair(b)
	c.SetDeadline(time.Time{})
	peer.SetDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, peer) // until c closes
	}()
	raw, err := c.SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	frame := []byte{0x81, 1, '\n'}
	err = raw.Write(func(fd uintptr) bool {
		for b.Loop() {
			if _, e := sendRaw(fd, frame); e != 0 && e != syscall.EAGAIN {
				b.Error(e)
				break
			}
		}
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
	c.Close()
	<-done
}
