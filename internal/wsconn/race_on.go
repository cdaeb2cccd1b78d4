//go:build race

package wsconn

import (
	"runtime"
	"unsafe"
)

// With the race detector on, tell it what recvRaw and sendRaw do to their
// buffers, as syscall.Read and syscall.Write do: memory the kernel writes
// or reads is otherwise invisible to it, and a race on a read or write
// buffer would go unreported.
func raceWritten(p []byte, n int) {
	if n > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(unsafe.SliceData(p)), n)
	}
}

func raceRead(p []byte) {
	if len(p) > 0 {
		runtime.RaceReadRange(unsafe.Pointer(unsafe.SliceData(p)), len(p))
	}
}
