package testbed

import (
	"bytes"
	"sync"
)

// OutputBuffer collects a program's output, safe to write from one
// goroutine and read from another, and closes Ready once marker shows in
// it (a daemon saying it listens).
type OutputBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker []byte
	ready  chan struct{}
	once   sync.Once
}

// NewOutputBuffer is an empty OutputBuffer waiting for marker.
func NewOutputBuffer(marker string) *OutputBuffer {
	return &OutputBuffer{marker: []byte(marker), ready: make(chan struct{})}
}

// Ready is closed once the marker has been written.
func (b *OutputBuffer) Ready() <-chan struct{} { return b.ready }

func (b *OutputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if bytes.Contains(b.buf.Bytes(), b.marker) {
		b.once.Do(func() { close(b.ready) })
	}
	return len(p), nil
}

func (b *OutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
