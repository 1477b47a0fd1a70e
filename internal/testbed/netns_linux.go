package testbed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// InNetns runs f on a thread that has entered the network namespace at
// nsPath, so that the sockets f makes are that namespace's. The thread is
// unlocked only once it is back in its own namespace; otherwise it ends
// with its goroutine.
func InNetns(nsPath string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- err
			return
		}
		defer self.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("enter %s: %w", nsPath, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- ferr
	}()
	return <-ch
}

// MakeInNetns returns what f returns when it runs on a thread inside
// the network namespace at nsPath (see InNetns): a socket made there
// stays there, and works from any goroutine.
func MakeInNetns[T any](nsPath string, f func() (T, error)) (T, error) {
	var v T
	err := InNetns(nsPath, func() error {
		var err error
		v, err = f()
		return err
	})
	return v, err
}

// ListenUDPInNetns binds a UDP socket at addr (e.g. ":51820") inside the
// network namespace at nsPath, to hold that port there.
func ListenUDPInNetns(nsPath, addr string) (net.PacketConn, error) {
	pc, err := MakeInNetns(nsPath, func() (net.PacketConn, error) { return net.ListenPacket("udp4", addr) })
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s in %s: %w", addr, nsPath, err)
	}
	return pc, nil
}

// ListenTCPInNetns listens on TCP addr (e.g. "127.0.0.1:0") inside the
// network namespace at nsPath; the listener's Accept works from any
// goroutine.
func ListenTCPInNetns(nsPath, addr string) (net.Listener, error) {
	l, err := MakeInNetns(nsPath, func() (net.Listener, error) { return net.Listen("tcp4", addr) })
	if err != nil {
		return nil, fmt.Errorf("listen on tcp %s in %s: %w", addr, nsPath, err)
	}
	return l, nil
}

// SendIntact sends size bytes of pseudo-random data over TCP from the
// network namespace at fromNS to addr (host:port), listened on inside the
// namespace at toNS, and returns how long the send took once connected;
// an error if the bytes that arrived differ (sha256) or ctx ends first.
func SendIntact(ctx context.Context, fromNS, toNS, addr string, size int) (time.Duration, error) {
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	l, err := ListenTCPInNetns(toNS, addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan [32]byte, 1)
	go func() {
		var sum [32]byte
		defer func() { got <- sum }()
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		if _, err := io.Copy(h, c); err == nil {
			sum = [32]byte(h.Sum(nil))
		}
	}()
	c, err := DialInNetns(ctx, fromNS, addr)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_, err = io.Copy(c, bytes.NewReader(data))
	c.Close()
	if err != nil {
		return 0, fmt.Errorf("send %d bytes to %s: %w", size, addr, err)
	}
	select {
	case sum := <-got:
		if sum != sha256.Sum256(data) {
			return 0, fmt.Errorf("the %d bytes sent to %s arrived changed or cut short", size, addr)
		}
	case <-ctx.Done():
		l.Close()
		return 0, fmt.Errorf("send %d bytes to %s: the receiver did not finish: %w", size, addr, ctx.Err())
	}
	return time.Since(start), nil
}
