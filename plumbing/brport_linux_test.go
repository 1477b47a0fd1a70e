package plumbing

import (
	"bytes"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestPortsIsolated sets the isolated flag on some ports of two bridges
// and reads every port's flag back in one dump, as the link table reads
// them; a link that is no bridge port is not in the answer.
func TestPortsIsolated(t *testing.T) {
	inFreshNetns(t)
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := map[int]bool{}
	for b := range 2 {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("br%d", b)}}
		if err := h.LinkAdd(br); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			name := fmt.Sprintf("p%d-%d", b, i)
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Index}, PeerName: "x" + name}
			if err := h.LinkAdd(v); err != nil {
				t.Fatal(err)
			}
			l, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			on := (b+i)%2 == 0
			if err := h.LinkSetIsolated(l, on); err != nil {
				t.Fatal(err)
			}
			want[l.Attrs().Index] = on
		}
	}
	k, err := newKernelTable(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	got, err := k.portsIsolated()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("%d bridge ports read, want %d: %v", len(got), len(want), got)
	}
	for i, on := range want {
		if v, ok := got[i]; !ok || v != on {
			t.Errorf("link %d: isolated %v (read: %v), want %v", i, v, ok, on)
		}
	}
}

// BenchmarkReadLinks reads the links of a machine in the performance
// issue's largest cloud (ten networks' bridges, 31 tunnel ports each: veth
// here, for want of gretap) three ways, side by side: the link table's
// Links, which the apply and the check read several times; the same with
// netlink's LinkGetProtinfo per port, as the table read them before (one
// dump of every port for each port); and the raw tool, `ip -d -j link
// show`, which reads the same facts in one dump.
func BenchmarkReadLinks(b *testing.B) {
	inFreshNetns(b)
	machine, err := netns.Get()
	if err != nil {
		b.Fatal(err)
	}
	defer machine.Close()
	h, err := netlink.NewHandle()
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for n := range 10 {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(n + 1)}}
		if err := h.LinkAdd(br); err != nil {
			b.Fatal(err)
		}
		for p := range 31 {
			name := fmt.Sprintf("btgt%d-%d", n+1, p+2)
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Index}, PeerName: fmt.Sprintf("x%d-%d", n, p)}
			if err := h.LinkAdd(v); err != nil {
				b.Fatal(err)
			}
		}
	}
	k, err := newKernelTable(slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer k.close()
	b.Run("table", func(b *testing.B) {
		for b.Loop() {
			ls, err := k.Links(b.Context())
			if err != nil || len(ls) != 320 {
				b.Fatalf("%d links: %v", len(ls), err)
			}
		}
	})
	b.Run("protinfo-per-port", func(b *testing.B) {
		for b.Loop() {
			ls, err := k.Links(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			for _, l := range ls {
				if l.Master == "" {
					continue
				}
				nl, err := h.LinkByName(l.Name)
				if err == nil {
					_, err = h.LinkGetProtinfo(nl)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("ip", func(b *testing.B) {
		// ip runs in the namespace of the thread that starts it.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err == nil {
			defer orig.Close()
			err = netns.Set(machine)
		}
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
		for b.Loop() {
			out, err := exec.Command("ip", "-d", "-j", "link", "show").Output()
			if err != nil || !bytes.Contains(out, []byte(`"btgt10-32"`)) {
				b.Fatalf("ip link show: %v: %.200s", err, out)
			}
		}
	})
}
