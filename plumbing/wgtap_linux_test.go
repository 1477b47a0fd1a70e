package plumbing

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
	"golang.zx2c4.com/wireguard/tun"
)

// TestWGTAPCarriesSuperPackets joins two namespaces by two of the
// userspace device's taps, with a Go shuttle between them where
// wireguard-go would be (Read on one, Write on the other), and a VXLAN
// link over them, as a network's chain has: 24 MiB of TCP cross the VXLAN
// link intact, the reads give several packets a frame (the kernel's
// UDP-tunnel super-packets, split) and the writes take several packets a
// frame (merged back). Where the kernel has no UDP-tunnel offload on a tap
// the test does not apply.
func TestWGTAPCarriesSuperPackets(t *testing.T) {
	testbed.NeedRoot(t)
	testbed.NeedPrograms(t, "ip")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The shuttles end when the taps close, which cleanups registered
	// later do first.
	var shuttles sync.WaitGroup
	t.Cleanup(shuttles.Wait)
	names := []string{testbed.LabName("wta"), testbed.LabName("wtb")}
	taps := make([]*wgTAP, 2)
	for i, ns := range names {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		tap, err := testbed.MakeInNetns(netnsPath(ns), func() (*wgTAP, error) { return createWGTAP("wt", 1420) })
		if errors.Is(err, errNoTunnelOffload) {
			testbed.Applies(t, false, "this kernel's tap has no UDP-tunnel segmentation (Linux 6.18 and later have it)")
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tap.Close() })
		taps[i] = tap
	}
	for i, ns := range names {
		me, peer := []string{"1", "2"}[i], []string{"2", "1"}[i]
		run("ip", "-n", ns, "addr", "add", "10.9.0."+me+"/30", "dev", "wt")
		run("ip", "-n", ns, "link", "set", "wt", "up")
		run("ip", "-n", ns, "link", "add", "vx", "type", "vxlan", "id", "42", "local", "10.9.0."+me,
			"remote", "10.9.0."+peer, "dstport", "4789", "dev", "wt")
		run("ip", "-n", ns, "addr", "add", "10.10.0."+me+"/24", "dev", "vx")
		run("ip", "-n", ns, "link", "set", "vx", "up")
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	for _, pair := range [][2]*wgTAP{{taps[0], taps[1]}, {taps[1], taps[0]}} {
		shuttles.Go(func() { shuttle(pair[0], pair[1]) })
	}

	const size = 24 << 20
	took, err := testbed.SendIntact(ctx, netnsPath(names[0]), netnsPath(names[1]), "10.10.0.2:7000", size)
	if err != nil {
		t.Fatal(err)
	}
	a, b := &taps[0].stats, &taps[1].stats
	perRead := float64(a.packetsRead.Load()) / float64(max(1, a.framesRead.Load()))
	perWrite := float64(b.packetsToWrite.Load()) / float64(max(1, b.framesWritten.Load()))
	t.Logf("%d MiB across in %s; sender's tap: %d frames read gave %d packets (%.1f each); receiver's tap: %d packets written as %d frames (%.1f each)",
		size>>20, took.Round(time.Millisecond), a.framesRead.Load(), a.packetsRead.Load(), perRead,
		b.packetsToWrite.Load(), b.framesWritten.Load(), perWrite)
	if perRead < 4 {
		t.Errorf("the sender's reads gave %.1f packets a frame: the kernel's super-packets were not taken whole", perRead)
	}
	if perWrite < 4 {
		t.Errorf("the receiver's writes took %.1f packets a frame: the packets were not merged", perWrite)
	}
}

// shuttle moves packets from one tap to the other, in batches, as
// wireguard-go does (with its headroom), until a tap closes.
func shuttle(from, to *wgTAP) {
	const offset = 16
	bufs := make([][]byte, from.BatchSize())
	sizes := make([]int, len(bufs))
	for i := range bufs {
		bufs[i] = make([]byte, offset+65535)
	}
	out := make([][]byte, len(bufs))
	for {
		n, err := from.Read(bufs, sizes, offset)
		if err != nil && n == 0 {
			if errors.Is(err, tun.ErrTooManySegments) {
				continue
			}
			return
		}
		for i := range n {
			out[i] = bufs[i][:offset+sizes[i]]
		}
		if _, err := to.Write(out[:n], offset); err != nil {
			select {
			case <-to.done:
				return
			default:
			}
		}
	}
}

// netnsPath is where ip(8) keeps the named network namespace.
func netnsPath(name string) string { return "/run/netns/" + name }
