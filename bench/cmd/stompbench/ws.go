package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// A minimal RFC 6455 framing layer for the benchmark's own peers. It is
// written for speed, not generality: the load generator and the echo must
// never be the bottleneck, so they frame by hand into bufio buffers, mask
// with an all-zero key (legal framing: the key is present, the proxy still
// runs its unmasking code) and never allocate per message in steady state.

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maskBytes XORs one frame's payload b with its masking key.
func maskBytes(key [4]byte, b []byte) {
	if key == [4]byte{} {
		return
	}
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}

// flushingReader flushes pending writes before every read from the socket
// (that is, whenever bufio has no buffered input left and the read may
// block), so two peers can never both wait for data the other still holds
// in its write buffer, while writes between reads are coalesced into one
// syscall.
type flushingReader struct {
	conn  io.Reader
	w     *bufio.Writer
	mu    *sync.Mutex // guards w when other goroutines write too; may be nil
	flush func()      // called after each flush that wrote something
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if f.mu != nil {
		f.mu.Lock()
	}
	var err error
	if f.w.Buffered() > 0 {
		err = f.w.Flush()
		if err == nil && f.flush != nil {
			f.flush()
		}
	}
	if f.mu != nil {
		f.mu.Unlock()
	}
	if err != nil {
		return 0, err
	}
	return f.conn.Read(p)
}

// errClosed is returned when the peer sent a close frame.
var errClosed = errors.New("peer closed")

// msgReader reads whole messages, reassembling fragments. Control frames
// are handed to onControl (which may write a pong).
type msgReader struct {
	br        *bufio.Reader
	buf       []byte
	hdr       [14]byte
	key       [4]byte // a field: a local would escape through io.ReadFull
	ctl       [125]byte
	onControl func(op byte, payload []byte) error
}

// next returns the next data message; its payload is valid until the next
// call.
func (r *msgReader) next() (op byte, payload []byte, err error) {
	r.buf = r.buf[:0]
	op = 0
	for {
		if _, err := io.ReadFull(r.br, r.hdr[:2]); err != nil {
			return 0, nil, err
		}
		fin := r.hdr[0]&0x80 != 0
		fop := r.hdr[0] & 0x0F
		masked := r.hdr[1]&0x80 != 0
		n := int64(r.hdr[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(r.br, r.hdr[2:4]); err != nil {
				return 0, nil, err
			}
			n = int64(binary.BigEndian.Uint16(r.hdr[2:4]))
		case 127:
			if _, err := io.ReadFull(r.br, r.hdr[2:10]); err != nil {
				return 0, nil, err
			}
			n = int64(binary.BigEndian.Uint64(r.hdr[2:10]))
		}
		r.key = [4]byte{}
		if masked {
			if _, err := io.ReadFull(r.br, r.key[:]); err != nil {
				return 0, nil, err
			}
		}
		if fop >= opClose {
			if n > 125 {
				return 0, nil, fmt.Errorf("control frame of %d bytes", n)
			}
			p := r.ctl[:n]
			if _, err := io.ReadFull(r.br, p); err != nil {
				return 0, nil, err
			}
			maskBytes(r.key, p)
			if fop == opClose {
				return opClose, p, errClosed
			}
			if r.onControl != nil {
				if err := r.onControl(fop, p); err != nil {
					return 0, nil, err
				}
			}
			continue
		}
		if n > 64<<20 {
			return 0, nil, fmt.Errorf("frame of %d bytes", n)
		}
		if fop != opContinuation {
			op = fop
		}
		start := len(r.buf)
		end := start + int(n)
		if cap(r.buf) < end {
			nb := make([]byte, start, max(end, 2*cap(r.buf)))
			copy(nb, r.buf)
			r.buf = nb
		}
		r.buf = r.buf[:end]
		if _, err := io.ReadFull(r.br, r.buf[start:end]); err != nil {
			return 0, nil, err
		}
		maskBytes(r.key, r.buf[start:end])
		if fin {
			return op, r.buf, nil
		}
	}
}

// isHeartBeat reports whether a message holds only STOMP EOLs.
func isHeartBeat(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	for _, c := range p {
		if c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}
