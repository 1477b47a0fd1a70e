package plumbing

import (
	"errors"
	"os"
	"sync"

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
type readAheadTUN struct {
	tun.Device

	full chan *tunBatch // read, in the order read
	free chan *tunBatch // to read into
	done chan struct{}
	stop sync.Once

	cur *tunBatch // being handed out; only Read touches it
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

// readAheadBufSize fits any packet the tun gives, as wireguard-go's own
// buffers do (it reads GSO segments up to the largest IP packet).
const readAheadBufSize = readAheadOffset + 65535

func newReadAheadTUN(dev tun.Device) *readAheadTUN {
	t := &readAheadTUN{Device: dev, full: make(chan *tunBatch, readAheadBatches),
		free: make(chan *tunBatch, readAheadBatches), done: make(chan struct{})}
	n := dev.BatchSize()
	for range readAheadBatches {
		b := &tunBatch{bufs: make([][]byte, n), sizes: make([]int, n)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, readAheadBufSize)
		}
		t.free <- b
	}
	go t.readLoop()
	return t
}

// readLoop reads the tun into free batches until the device closes.
func (t *readAheadTUN) readLoop() {
	for {
		var b *tunBatch
		select {
		case b = <-t.free:
		case <-t.done:
			return
		}
		b.n, b.err = t.Device.Read(b.bufs, b.sizes, readAheadOffset)
		b.next = 0
		select {
		case t.full <- b:
		case <-t.done:
			return
		}
		if errors.Is(b.err, os.ErrClosed) {
			return // no Read will give anything again
		}
	}
}

// Read hands out what the reader has read: it waits for the first batch,
// then adds every batch already read, up to len(bufs) packets. A batch's
// error comes after its packets, as a tun Read gives it.
func (t *readAheadTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
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

// Close closes the tun, which ends the reader.
func (t *readAheadTUN) Close() error {
	err := t.Device.Close()
	t.stop.Do(func() { close(t.done) })
	return err
}
