//go:build linux

package realkernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
)

// The kernel path's throughput: TCP across the chain (probe → bridge →
// gretap → kernel WireGuard → … → probe) against TCP across kernel
// WireGuard alone (mesh address to mesh address), the same two guests, one
// after the other. Under TCG the absolute figures mean little; their
// ratio is the chain's cost (the physical limit is 1 − 42/1420 ≈ 0.97).
const (
	tcpPort    = 5201
	tcpSeconds = 2
	tcpRounds  = 3 // the legs alternate, so a slow spell of the host hits both
)

// do runs f on a thread inside the probe's namespace: sockets f makes
// belong to the probe.
func (p *probe) do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(p.ns); err != nil {
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // never back to the pool in the probe's namespace
		return errors.Join(ferr, err)
	}
	return ferr
}

// drain accepts connections on l and reads each to its end, counting the
// bytes; a connection is closed once read, which tells its sender that
// every byte arrived.
func drain(l net.Listener, n *atomic.Int64) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			k, _ := io.Copy(io.Discard, c)
			n.Add(k)
		}()
	}
}

// send writes to c for d, then half-closes it and waits for the far end to
// close (all bytes read): the rate is of bytes that arrived.
func send(c net.Conn, d time.Duration) (mbps float64, err error) {
	defer c.Close()
	buf := make([]byte, 128<<10)
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		k, err := c.Write(buf)
		n += int64(k)
		if err != nil {
			return 0, err
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		return 0, fmt.Errorf("waiting for the far end to read all: %w", err)
	}
	return float64(n) * 8 / 1e6 / time.Since(start).Seconds(), nil
}

// runThroughput measures both legs on network id (whose probe is p):
// machine 2 listens and drains, machine 1 sends.
func (g *guest) runThroughput(ctx context.Context, id int, p *probe) error {
	other := 1 - g.index
	chainAt := netip.AddrPortFrom(probeAddr(id, other).Addr(), tcpPort)
	meshAt := netip.AddrPortFrom(meshAddr(other).Addr(), tcpPort)
	var got atomic.Int64
	if g.index == 1 {
		meshL, err := net.Listen("tcp4", netip.AddrPortFrom(meshAddr(g.index).Addr(), tcpPort).String())
		if err != nil {
			g.fail("tcp-throughput", "listen on the mesh address: %v", err)
			return nil
		}
		defer meshL.Close()
		var chainL net.Listener
		if err := p.do(func() (err error) {
			chainL, err = net.Listen("tcp4", netip.AddrPortFrom(probeAddr(id, g.index).Addr(), tcpPort).String())
			return err
		}); err != nil {
			g.fail("tcp-throughput", "listen in the probe: %v", err)
			return nil
		}
		defer chainL.Close()
		go drain(meshL, &got)
		go drain(chainL, &got)
	}
	if err := g.barrier(ctx, "tcp-listen"); err != nil {
		return err
	}
	if g.index == 0 {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: meshAddr(g.index).Addr().AsSlice()}}
		legs := []struct {
			name string
			dial func() (net.Conn, error)
			mbps []float64
		}{
			{name: "kernel btwg0 alone to " + meshAt.String(), dial: func() (net.Conn, error) { return d.DialContext(ctx, "tcp4", meshAt.String()) }},
			{name: fmt.Sprintf("the chain of net%d to %s", id, chainAt), dial: func() (c net.Conn, err error) {
				err = p.do(func() error {
					c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp4", chainAt.String())
					return err
				})
				return c, err
			}},
		}
		for range tcpRounds {
			for i := range legs {
				c, err := legs[i].dial()
				var mbps float64
				if err == nil {
					mbps, err = send(c, tcpSeconds*time.Second)
				}
				if err != nil {
					g.fail("tcp-throughput", "across %s: %v", legs[i].name, err)
					return g.barrier(ctx, "tcp-done")
				}
				legs[i].mbps = append(legs[i].mbps, mbps)
			}
		}
		wg, chain := medianOf(legs[0].mbps), medianOf(legs[1].mbps)
		g.pass("tcp-throughput", "TCP across the chain of net%d %.0f Mbit/s (%.0f), across kernel btwg0 alone %.0f Mbit/s (%.0f): ratio %.2f (medians of %d alternating rounds of %d s, TCG)",
			id, chain, legs[1].mbps, wg, legs[0].mbps, chain/wg, tcpRounds, tcpSeconds)
	}
	if err := g.barrier(ctx, "tcp-done"); err != nil {
		return err
	}
	if g.index == 1 {
		if n := got.Load(); n > 0 {
			g.pass("tcp-throughput", "drained %d MB from both legs", n>>20)
		} else {
			g.fail("tcp-throughput", "nothing arrived on either leg")
		}
	}
	return nil
}

func medianOf(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
