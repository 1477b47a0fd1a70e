package plumbing

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/butter-cloud/butter/helperapi"
)

// The daemon's echoes through the tunnel: every probeEvery, to each peer
// it reaches directly, a small echo and one at the WireGuard device's MTU
// with don't-fragment; each waits probeWait for its reply.
const (
	probeEvery = 10 * time.Second
	probeWait  = time.Second
	smallEcho  = 64
	// probeParallel is how many peers are echoed at once.
	probeParallel = 8
	// staleHandshake is when a handshake no longer counts as fresh; the
	// operator's cloud.StaleHandshake.
	staleHandshake = 3 * time.Minute
)

// probes are the last round's results, by peer name.
type probes struct {
	mu   sync.Mutex
	last map[string]helperapi.Probe
}

func (p *probes) get(name string) (helperapi.Probe, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.last[name]
	return r, ok
}

func (p *probes) set(m map[string]helperapi.Probe) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = m
}

// probeTarget is one peer to echo.
type probeTarget struct {
	name      string
	addr      netip.Addr
	handshake bool
}

// probeLoop echoes every directly reached peer through the tunnel until
// ctx ends; Facts reports the last round (PeerFacts.Probe).
func (h *Helper) probeLoop(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		targets, size := h.probeTargets()
		if len(targets) > 0 && size > 0 {
			h.probes.set(probeAll(ctx, targets, size))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeTargets are the peers to echo and the full size, read under the
// helper's lock: the spec's direct peers with their handshake's freshness,
// and the WireGuard device's MTU.
func (h *Helper) probeTargets() ([]probeTarget, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	spec, _, err := h.state.spec()
	if err != nil {
		return nil, 0
	}
	dev, err := h.wg.Device(WireGuardName)
	if err != nil {
		return nil, 0
	}
	fresh := map[string]bool{}
	for _, p := range dev.Peers {
		fresh[p.PublicKey.String()] = !p.LastHandshakeTime.IsZero() && time.Since(p.LastHandshakeTime) <= staleHandshake
	}
	var out []probeTarget
	for _, p := range spec.Peers {
		if p.Via == "" && p.MeshIP.IsValid() {
			out = append(out, probeTarget{name: p.Name, addr: p.MeshIP, handshake: fresh[p.PublicKey]})
		}
	}
	size, _ := h.links.linkMTU(WireGuardName)
	return out, size
}

// probeAll echoes the targets, probeParallel at a time: each echo has a
// raw socket of its own, and every one of them sees every ICMP packet
// that arrives while it is open.
func probeAll(ctx context.Context, targets []probeTarget, size int) map[string]helperapi.Probe {
	out := make(map[string]helperapi.Probe, len(targets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, probeParallel)
	for _, t := range targets {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			p := helperapi.Probe{At: time.Now(), Handshake: t.handshake, RTTMillis: -1, FullSize: size}
			rtt, err := echo(ctx, t.addr, smallEcho)
			if err == nil {
				p.RTTMillis = float64(rtt.Microseconds()) / 1000
				_, err = echo(ctx, t.addr, size)
				p.FullSizeReplied = err == nil
			}
			if err != nil && !errors.Is(err, errNoReply) {
				p.Error = err.Error()
			}
			mu.Lock()
			out[t.name] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

var errNoReply = errors.New("no reply")

// echo sends one ICMP echo of size bytes (the IP packet) to addr with
// don't-fragment set, and waits probeWait for its reply.
func echo(ctx context.Context, addr netip.Addr, size int) (time.Duration, error) {
	c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return 0, fmt.Errorf("echo to %s: %w", addr, err)
	}
	defer c.Close()
	raw, err := c.(*net.IPConn).SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("echo to %s: %w", addr, err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
	}); err != nil || serr != nil {
		return 0, fmt.Errorf("echo to %s: set don't-fragment: %w", addr, errors.Join(err, serr))
	}
	id, seq := int(uint16(rand.Uint32())), int(uint16(rand.Uint32()))
	msg, err := echoRequest(id, seq, max(size-20, 8))
	if err != nil {
		return 0, fmt.Errorf("echo to %s: %w", addr, err)
	}
	deadline := time.Now().Add(probeWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	start := time.Now()
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: addr.AsSlice()}); err != nil {
		return 0, fmt.Errorf("echo of %d bytes to %s: %w", size, addr, err)
	}
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0, errNoReply
		}
		ip, ok := from.(*net.IPAddr)
		if !ok || !ip.IP.Equal(addr.AsSlice()) {
			continue
		}
		// Go strips the IPv4 header: buf is the ICMP message.
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
			return time.Since(start), nil
		}
	}
}

// echoRequest is an ICMP echo request of n bytes, its header included.
func echoRequest(id, seq, n int) ([]byte, error) {
	data := make([]byte, max(n-8, 0))
	for i := range data {
		data[i] = byte(i)
	}
	return (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
}
