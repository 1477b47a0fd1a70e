package images

import (
	"encoding/binary"
	"testing"
)

// rawQCOW2Header is a minimal qcow2 header of version v with a backing file
// at off of length n.
func rawQCOW2Header(v uint32, off uint64, n uint32) []byte {
	h := make([]byte, 512)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], v)
	binary.BigEndian.PutUint64(h[8:], off)
	binary.BigEndian.PutUint32(h[16:], n)
	return h
}

// The format sniffer takes any first bytes without a panic: a claimed
// offset or length in a qcow2 header is never trusted to index the header.
func FuzzDetectFormat(f *testing.F) {
	f.Add(rawQCOW2Header(3, 0, 0), int64(1<<20))
	f.Add(rawQCOW2Header(2, 0x100, 8), int64(1<<20))
	f.Add(rawQCOW2Header(3, 1<<40, 1<<31), int64(1<<20))
	f.Add([]byte("QFI\xfb"), int64(4))
	f.Add([]byte("\x1f\x8b\x08"), int64(3))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, head []byte, size int64) {
		format, err := detectFormat(head, size)
		if err == nil && format == "" {
			t.Fatal("no format and no error")
		}
	})
}
