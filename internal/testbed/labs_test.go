package testbed

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/lab/sim"
)

func TestLabName(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		name := LabName("ch")
		if err := sim.CheckName(name); err != nil || len(name) != 8 || !strings.HasPrefix(name, "ch") {
			t.Fatalf("LabName(ch) = %q (%v), want ch and 6 more characters that sim.CheckName takes", name, err)
		}
		if seen[name] {
			t.Fatalf("LabName gave %q twice", name)
		}
		seen[name] = true
	}
	for _, bad := range []string{"", "bt", "abcd", "Ab", "1a"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("LabName(%q) did not panic", bad)
				}
			}()
			LabName(bad)
		}()
	}
}

func TestUnderlay(t *testing.T) {
	wide := netip.MustParsePrefix("10.128.0.0/10")
	a, b := Underlay("ch000001"), Underlay("ch000002")
	for _, p := range []netip.Prefix{a, b} {
		if p.Bits() != 24 || !wide.Contains(p.Addr()) || p != p.Masked() {
			t.Errorf("Underlay = %s, want a /24 in %s", p, wide)
		}
	}
	if a == b {
		t.Errorf("two names got the same underlay %s", a)
	}
	if Underlay("ch000001") != a {
		t.Error("Underlay is not a function of the name")
	}
}

func TestOwner(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	self := owner(os.Getpid())
	if self == "" || self != selfOwner() {
		t.Fatalf("owner(self) = %q, selfOwner = %q", self, selfOwner())
	}
	if got := owner(1 << 30); got != "" {
		t.Errorf("owner of a PID that cannot exist = %q", got)
	}
}
