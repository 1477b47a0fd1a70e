package plumbing

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

// scriptedTUN is a tun.Device whose Reads give the batches pushed, one
// per Read, and os.ErrClosed once closed; it has a packet pending while a
// pushed batch waits. A push of several batches lands at once, so whether
// a reader finds them pending does not depend on timing.
type scriptedTUN struct {
	tun.Device // nil: only what readAheadTUN calls is here
	mu         sync.Mutex
	queue      []scriptedRead
	wake       chan struct{} // a push happened
	closed     chan struct{}
}

type scriptedRead struct {
	packets []string
	err     error
}

func newScriptedTUN() *scriptedTUN {
	return &scriptedTUN{wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// push queues reads, all at once.
func (s *scriptedTUN) push(rs ...scriptedRead) {
	s.mu.Lock()
	s.queue = append(s.queue, rs...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *scriptedTUN) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0
}

func (s *scriptedTUN) BatchSize() int { return 4 }

func (s *scriptedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			r := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			for i, p := range r.packets {
				sizes[i] = copy(bufs[i][offset:], p)
			}
			return len(r.packets), r.err
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.closed:
			return 0, fmt.Errorf("read tun: %w", os.ErrClosed)
		}
	}
}

func (s *scriptedTUN) Close() error { close(s.closed); return nil }

// readAll is one Read of t into n buffers, as wireguard-go makes them.
func readAll(t *readAheadTUN, n int) ([]string, error) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 100)
	}
	sizes := make([]int, n)
	got, err := t.Read(bufs, sizes, 16)
	var out []string
	for i := range got {
		out = append(out, string(bufs[i][16:16+sizes[i]]))
	}
	return out, err
}

// What the tun gave while nobody read comes out in one Read, in order;
// a Read waits for the first packet; what does not fit waits for the next
// Read; an error comes after the packets read with it; a closed tun ends
// every Read.
func TestReadAheadTUN(t *testing.T) {
	s := newScriptedTUN()
	d, err := newReadAheadTUN(s)
	if err != nil {
		t.Fatal(err)
	}
	r := d.(*readAheadTUN)
	// Reads the tun answers at once make one batch: after the Read that
	// waited, the reader reads on while a packet is pending.
	waitFull := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(r.full) < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(10 * time.Millisecond) // a reader reading on would have by now
		if len(r.full) != n {
			t.Fatalf("%d batches read, want %d", len(r.full), n)
		}
	}
	s.push(scriptedRead{packets: []string{"a"}}, scriptedRead{packets: []string{"b"}},
		scriptedRead{packets: []string{"c"}})
	waitFull(1)
	if got, err := readAll(r, 8); err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("first Read: %q, %v; want a, b, c in one batch", got, err)
	}
	// It reads on only while a whole device batch (4) still fits in its
	// batch (8): the third Read goes to the next batch.
	s.push(scriptedRead{packets: []string{"1", "2", "3", "4"}}, scriptedRead{packets: []string{"5", "6", "7", "8"}},
		scriptedRead{packets: []string{"9", "10", "11"}})
	waitFull(2)
	if got, err := readAll(r, 16); err != nil || !slices.Equal(got, strings.Fields("1 2 3 4 5 6 7 8 9 10 11")) {
		t.Fatalf("Read of two batches: %q, %v; want 1 to 11 in order", got, err)
	}

	// More than fits: the rest in the next Read.
	s.push(scriptedRead{packets: []string{"d", "e", "f"}})
	if got, err := readAll(r, 2); err != nil || !slices.Equal(got, []string{"d", "e"}) {
		t.Fatalf("Read into 2: %q, %v; want d, e", got, err)
	}
	if got, err := readAll(r, 2); err != nil || !slices.Equal(got, []string{"f"}) {
		t.Fatalf("next Read: %q, %v; want f", got, err)
	}

	// A Read waits for a packet.
	done := make(chan []string)
	go func() {
		got, _ := readAll(r, 4)
		done <- got
	}()
	select {
	case got := <-done:
		t.Fatalf("Read returned %q with nothing read", got)
	case <-time.After(50 * time.Millisecond):
	}
	s.push(scriptedRead{packets: []string{"g"}})
	if got := <-done; !slices.Equal(got, []string{"g"}) {
		t.Fatalf("waiting Read: %q, want g", got)
	}

	// An error after its packets.
	boom := errors.New("too many segments")
	s.push(scriptedRead{packets: []string{"h"}, err: boom})
	if got, err := readAll(r, 4); !errors.Is(err, boom) || !slices.Equal(got, []string{"h"}) {
		t.Fatalf("Read with an error: %q, %v; want h and the error", got, err)
	}

	// Closed: every Read ends.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(r, 4); !errors.Is(err, os.ErrClosed) || len(got) != 0 {
		t.Fatalf("Read after Close: %q, %v; want os.ErrClosed", got, err)
	}

	// Its batches go back to the pool, and the next device takes them
	// rather than mapping more.
	deadline := time.Now().Add(5 * time.Second)
	for pooled(8) < readAheadBatches && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	before := pooled(8)
	if before < readAheadBatches {
		t.Fatalf("%d batches in the pool after Close, want at least %d", before, readAheadBatches)
	}
	d2, err := newReadAheadTUN(newScriptedTUN())
	if err != nil {
		t.Fatal(err)
	}
	if now := pooled(8); now != before-readAheadBatches {
		t.Errorf("a new device left %d batches of %d in the pool, want %d", now, before, before-readAheadBatches)
	}
	// Its batches back before the test ends, so a next run (-count) counts
	// only its own.
	d2.Close()
	deadline = time.Now().Add(5 * time.Second)
	for pooled(8) < before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// pooled counts the pool's batches of n buffers.
func pooled(n int) int {
	batchPool.Lock()
	defer batchPool.Unlock()
	c := 0
	for _, b := range batchPool.free {
		if len(b.bufs) == n {
			c++
		}
	}
	return c
}
