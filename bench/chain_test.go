package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/lab"
	"github.com/butter-cloud/butter/plumbing"
)

const iperf3Bin = "/usr/bin/iperf3"

// seconds is how long each iperf3 run lasts (plus one omitted second).
const seconds = 5

// BenchmarkChain measures, in one lab, TCP throughput probe to probe
// across the whole chain (bridge, VXLAN, userspace WireGuard), mesh address
// to mesh address across WireGuard alone, and underlay to underlay bare,
// and prints the figures and the ratios chain/wg0 and wg0/bare. Run it
// once: -benchtime 1x (bench/chain.sh does).
func BenchmarkChain(b *testing.B) {
	var why []string
	if os.Geteuid() != 0 {
		why = append(why, "needs root to make a lab")
	}
	for _, bin := range []string{iperf3Bin, "/usr/bin/ping"} {
		if _, err := os.Stat(bin); err != nil {
			why = append(why, "needs "+bin)
		}
	}
	if len(why) > 0 {
		b.Skip(why)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 3*time.Minute)
	defer cancel()

	dir := b.TempDir()
	butter := buildButter(b, ctx, dir)
	l, err := lab.Up(ctx, lab.Config{Name: fmt.Sprintf("bn%04x", os.Getpid()&0xffff), Machines: 3})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			b.Errorf("lab down: %v", err)
		}
	})
	net := plumbing.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: plumbing.TunnelAuto}
	mesh := lab.Mesh{Networks: []plumbing.Network{net}}
	logs, err := os.Create(filepath.Join(dir, "helpers.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	h, err := l.StartMesh(ctx, butter, mesh, func(*lab.Machine) io.Writer { return logs })
	if err != nil {
		b.Fatal(err)
	}
	m1, m2 := l.Machines[0], l.Machines[1]
	rep := h.Reports[m1.Name].Networks[0]
	p1, err := l.AddProbe(ctx, m1, rep.Bridge, netip.MustParsePrefix("10.10.1.1/24"), rep.MTU)
	if err != nil {
		b.Fatal(err)
	}
	p2, err := l.AddProbe(ctx, m2, rep.Bridge, netip.MustParsePrefix("10.10.1.2/24"), rep.MTU)
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	chain := measure(b, ctx, "chain", p1, p2, p1.Addr.Addr(), p2.Addr.Addr())
	wg := measure(b, ctx, "wg0", m1, m2, mesh.Addr(m1).Addr(), mesh.Addr(m2).Addr())
	bare := measure(b, ctx, "bare", m1, m2, m1.Addr.Addr(), m2.Addr.Addr())
	b.StopTimer()

	b.ReportMetric(chain/1e6, "chain-Mbit/s")
	b.ReportMetric(wg/1e6, "wg0-Mbit/s")
	b.ReportMetric(bare/1e6, "bare-Mbit/s")
	b.ReportMetric(chain/wg, "chain/wg0")
	b.ReportMetric(wg/bare, "wg0/bare")
	b.Logf("\nTCP throughput, iperf3 -t %d, one stream, %s tunnel, network MTU %d, WireGuard MTU %d:\n"+
		"  chain (probe %s -> probe %s, bridge+%s+wg0): %8.0f Mbit/s\n"+
		"  wg0   (mesh %s -> %s):                   %8.0f Mbit/s\n"+
		"  bare  (underlay %s -> %s):             %8.0f Mbit/s\n"+
		"  chain/wg0 = %.2f   wg0/bare = %.3f",
		seconds, rep.Tunnel, rep.MTU, h.Reports[m1.Name].WireGuard.MTU,
		p1.Addr.Addr(), p2.Addr.Addr(), rep.Tunnel, chain/1e6,
		mesh.Addr(m1).Addr(), mesh.Addr(m2).Addr(), wg/1e6,
		m1.Addr.Addr(), m2.Addr.Addr(), bare/1e6,
		chain/wg, wg/bare)
}

// place is a machine or a probe.
type place interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	Start(ctx context.Context, out io.Writer, name string, args ...string) (*lab.Process, error)
}

// measure runs iperf3 from client (at from) to server (at to) and returns
// the bits per second the receiver saw.
func measure(b *testing.B, ctx context.Context, what string, client, server place, from, to netip.Addr) float64 {
	b.Helper()
	out := &readyBuffer{ready: make(chan struct{}), marker: []byte("Server listening")}
	srv, err := server.Start(ctx, out, iperf3Bin, "-s", "-1", "--forceflush", "-B", to.String())
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Kill()
	select {
	case <-out.ready:
	case <-srv.Done():
		b.Fatalf("%s: iperf3 server exited: %v: %s", what, srv.Err(), out)
	case <-time.After(5 * time.Second):
		b.Fatalf("%s: iperf3 server does not listen: %s", what, out)
	}
	runCtx, cancel := context.WithTimeout(ctx, (seconds+20)*time.Second)
	defer cancel()
	data, err := client.Run(runCtx, iperf3Bin, "-c", to.String(), "-B", from.String(),
		"-t", strconv.Itoa(seconds), "-O", "1", "--connect-timeout", "3000", "-J")
	if err != nil {
		b.Fatalf("%s: %v\n%s", what, err, data)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		b.Fatalf("%s: decode iperf3 output: %v", what, err)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("%s: iperf3: %q, %v bit/s", what, res.Error, res.End.SumReceived.BitsPerSecond)
	}
	return res.End.SumReceived.BitsPerSecond
}

type readyBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker []byte
	ready  chan struct{}
	once   sync.Once
}

func (r *readyBuffer) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	if bytes.Contains(r.buf.Bytes(), r.marker) {
		r.once.Do(func() { close(r.ready) })
	}
	return len(p), nil
}

func (r *readyBuffer) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

func buildButter(b *testing.B, ctx context.Context, dir string) string {
	b.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "butter")
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/butter-cloud/butter").CombinedOutput(); err != nil {
		b.Fatalf("go build butter: %v\n%s", err, out)
	}
	return bin
}
