package wsconn

import (
	"encoding/binary"
	"math/rand/v2"
)

// newKey returns a frame's mask key. RFC 6455 §5.3 asks for keys an
// intermediary cannot predict; math/rand/v2's global source is ChaCha8
// seeded from the OS, without the cost of a system call per frame.
func newKey() [4]byte {
	var k [4]byte
	binary.LittleEndian.PutUint32(k[:], rand.Uint32())
	return k
}

// maskBytes XORs b with key starting at key position pos, and returns the
// key position after b.
func maskBytes(key [4]byte, pos int, b []byte) int { return maskCopy(key, pos, b, b) }

// maskCopy writes src XOR key (from key position pos) to dst, which must be
// at least as long as src and may be src itself, and returns the key
// position after src. Masking while copying reads the payload once instead
// of twice (copy, then mask in place); words of 8 bytes, four at a time.
func maskCopy(key [4]byte, pos int, dst, src []byte) int {
	i := 0
	if len(src) >= 16 {
		var k8 [8]byte
		for j := range k8 {
			k8[j] = key[(pos+j)&3]
		}
		kw := binary.LittleEndian.Uint64(k8[:])
		dst = dst[:len(src)]
		for ; i+32 <= len(src); i += 32 {
			d, s := dst[i:i+32], src[i:i+32]
			binary.LittleEndian.PutUint64(d, binary.LittleEndian.Uint64(s)^kw)
			binary.LittleEndian.PutUint64(d[8:], binary.LittleEndian.Uint64(s[8:])^kw)
			binary.LittleEndian.PutUint64(d[16:], binary.LittleEndian.Uint64(s[16:])^kw)
			binary.LittleEndian.PutUint64(d[24:], binary.LittleEndian.Uint64(s[24:])^kw)
		}
		for ; i+8 <= len(src); i += 8 {
			binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^kw)
		}
	}
	for ; i < len(src); i++ {
		dst[i] = src[i] ^ key[(pos+i)&3]
	}
	return (pos + len(src)) & 3
}
