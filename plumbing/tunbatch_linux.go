package plumbing

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// readAheadTUN is a tun device for userspace WireGuard that reads its
// kernel tun ahead, in a goroutine of its own, and hands wireguard-go
// every packet read meanwhile in one Read.
//
// Why: a network's VXLAN packets reach the tun one by one (the kernel
// segments a tunnelled TCP stream before the tun, which takes no UDP
// tunnel segmentation offload on the kernels we run on), so a plain tun
// Read returns one packet, and wireguard-go then encrypts and sends each
// packet alone. Read ahead, the packets that arrive while wireguard-go
// works on a batch make the next batch: encrypted side by side and sent
// with one sendmmsg (UDP GSO where the kernel has it). What a plain Read
// already batches (TCP straight over the mesh, split from the kernel's
// super-packets) comes through as it was read.
//
// A batch is not one Read but every Read the tun can answer at once: after
// the Read that waited, the reader reads on while the tun has a packet
// queued (the kernel queues a segmented super-packet's 45 packets at once),
// so wireguard-go gets them together, encrypts them side by side and sends
// them as one UDP GSO send (measured: 1.45 times the throughput of a batch
// per Read, see docs/benchmarks.md).
type readAheadTUN struct {
	tun.Device
	pending func() bool // whether a Read would not wait; nil: never asked

	full   chan *tunBatch // read, in the order read
	free   chan *tunBatch // to read into
	done   chan struct{}  // closed by Close
	reader chan struct{}  // closed when the reader has stopped
	stop   sync.Once

	mu       sync.Mutex // held by Read, and by release
	cur      *tunBatch  // being handed out
	released bool       // the batches went back to the pool
}

// tunBatch is what one Read of the kernel tun gave.
type tunBatch struct {
	bufs  [][]byte
	sizes []int
	n     int   // packets read
	next  int   // the first not handed out
	err   error // the Read's error, handed out after its packets
}

// readAheadOffset is where the reader puts a packet in its buffers: room
// for the tun's virtio header in front, as wireguard-go leaves it.
const readAheadOffset = 16

// readAheadBatches is how many batches may wait read: a batch being
// handed out, one being read, and one ready.
const readAheadBatches = 3

// A batch holds two device batches: the reader reads on while a whole
// device batch still fits, as a Read may split a super-packet into that
// many packets and a packet that does not fit would be lost.
const readAheadPerBatch = 2

// readAheadBufSize fits any packet the tun gives, as wireguard-go's own
// buffers do (it reads GSO segments up to the largest IP packet, and a
// packet that does not fit would end the device): the MTU may grow while
// the device runs.
const readAheadBufSize = readAheadOffset + 65535

// Batches are kept for the process, as few as the devices alive at once
// need: their buffers are mapped memory the kernel backs only where a
// packet touched it (a 1420-byte packet, a page of the 64 KiB), which Go's
// heap, on huge pages, would not give (25 MiB resident per device,
// measured).
var batchPool struct {
	sync.Mutex
	free []*tunBatch
}

// getBatch is a batch of n buffers from the pool, or a new one.
func getBatch(n int) (*tunBatch, error) {
	batchPool.Lock()
	defer batchPool.Unlock()
	for i, b := range batchPool.free {
		if len(b.bufs) == n {
			batchPool.free = append(batchPool.free[:i], batchPool.free[i+1:]...)
			return b, nil
		}
	}
	mem, err := unix.Mmap(-1, 0, n*readAheadBufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("map %d read-ahead buffers: %w", n, err)
	}
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE) // a page per packet, not 2 MiB
	b := &tunBatch{bufs: make([][]byte, n), sizes: make([]int, n)}
	for i := range b.bufs {
		b.bufs[i] = mem[i*readAheadBufSize : (i+1)*readAheadBufSize : (i+1)*readAheadBufSize]
	}
	return b, nil
}

func putBatches(bs ...*tunBatch) {
	batchPool.Lock()
	defer batchPool.Unlock()
	for _, b := range bs {
		if b != nil {
			batchPool.free = append(batchPool.free, b)
		}
	}
}

// newReadAheadTUN reads dev ahead; without memory for its batches it is
// dev itself.
func newReadAheadTUN(dev tun.Device) (tun.Device, error) {
	t := &readAheadTUN{Device: dev, pending: pendingOf(dev), full: make(chan *tunBatch, readAheadBatches),
		free: make(chan *tunBatch, readAheadBatches), done: make(chan struct{}), reader: make(chan struct{})}
	for range readAheadBatches {
		b, err := getBatch(readAheadPerBatch * dev.BatchSize())
		if err != nil {
			close(t.free)
			for b := range t.free {
				putBatches(b)
			}
			return dev, err
		}
		t.free <- b
	}
	go t.readLoop()
	return t, nil
}

// readLoop reads the tun into free batches until the device closes.
func (t *readAheadTUN) readLoop() {
	defer close(t.reader)
	for {
		var b *tunBatch
		select {
		case b = <-t.free:
		case <-t.done:
			return
		}
		b.n, b.err = t.Device.Read(b.bufs, b.sizes, readAheadOffset)
		t.readMore(b)
		b.next = 0
		select {
		case t.full <- b:
		case <-t.done:
			t.free <- b // there is room: it came from there
			return
		}
		if errors.Is(b.err, os.ErrClosed) {
			return // no Read will give anything again
		}
	}
}

// readMore adds to b what the tun has queued, while a device batch fits.
func (t *readAheadTUN) readMore(b *tunBatch) {
	if t.pending == nil {
		return
	}
	room := t.Device.BatchSize()
	for b.err == nil && b.n+room <= len(b.bufs) && t.pending() {
		var n int
		n, b.err = t.Device.Read(b.bufs[b.n:], b.sizes[b.n:], readAheadOffset)
		b.n += n
	}
}

// pendingOf tells whether dev has a packet queued, without reading it: by
// asking a device that says (the tests' own), or polling its file; nil
// where neither can.
func pendingOf(dev tun.Device) func() bool {
	if p, ok := dev.(interface{ Pending() bool }); ok {
		return p.Pending
	}
	f := dev.File()
	if f == nil {
		return nil
	}
	raw, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var fds [1]unix.PollFd // only the reader asks: one, reused
	return func() bool {
		ready := false
		_ = raw.Control(func(fd uintptr) {
			fds[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
			n, err := unix.Poll(fds[:], 0)
			ready = err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
		})
		return ready
	}
}

// Read hands out what the reader has read: it waits for the first batch,
// then adds every batch already read, up to len(bufs) packets. A batch's
// error comes after its packets, as a tun Read gives it.
func (t *readAheadTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.released {
		return 0, os.ErrClosed
	}
	count := 0
	for count < len(bufs) {
		if t.cur == nil {
			if count == 0 {
				select {
				case t.cur = <-t.full:
				case <-t.done:
					return 0, os.ErrClosed
				}
			} else {
				select {
				case t.cur = <-t.full:
				default:
					return count, nil
				}
			}
		}
		b := t.cur
		for ; b.next < b.n && count < len(bufs); b.next++ {
			sizes[count] = copy(bufs[count][offset:], b.bufs[b.next][readAheadOffset:readAheadOffset+b.sizes[b.next]])
			count++
		}
		if b.next < b.n {
			break
		}
		t.cur = nil
		err := b.err
		t.free <- b
		if err != nil {
			return count, err
		}
	}
	return count, nil
}

// Close closes the tun, which ends the reader; the batches go back to the
// pool once the reader and any Read have let go of them.
func (t *readAheadTUN) Close() error {
	err := t.Device.Close()
	t.stop.Do(func() {
		close(t.done)
		go t.release()
	})
	return err
}

func (t *readAheadTUN) release() {
	<-t.reader
	t.mu.Lock()
	defer t.mu.Unlock()
	t.released = true
	putBatches(t.cur)
	t.cur = nil
	for _, ch := range []chan *tunBatch{t.full, t.free} {
		for {
			select {
			case b := <-ch:
				putBatches(b)
				continue
			default:
			}
			break
		}
	}
}
