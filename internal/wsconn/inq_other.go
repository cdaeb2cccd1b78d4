//go:build !(linux && (amd64 || arm64 || 386 || arm || riscv64 || s390x || loong64))

package wsconn

func inq(uintptr) (int, bool) { return 0, false }

func outq(uintptr) (int, bool) { return 0, false }

func lastDataRecv(uintptr) (uint32, bool) { return 0, false }
