package helperapi

import (
	"net/netip"
	"testing"
)

func TestVMPort(t *testing.T) {
	a, b := VMPort("web"), VMPort("db")
	if a == b {
		t.Fatalf("web and db share port %s", a)
	}
	if len(a) > 15 || a[:len(VMPortPrefix)] != VMPortPrefix {
		t.Fatalf("VMPort(web) = %q: want %s… of at most 15 characters", a, VMPortPrefix)
	}
	if VMPort("web") != a {
		t.Fatal("VMPort is not stable")
	}
}

func TestVMMAC(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"10.100.1.2", "52:54:00:64:01:02"},
		{"10.100.1.3", "52:54:00:64:01:03"},
		{"192.168.7.9", "52:54:00:a8:07:09"},
		{"fd00::2", ""},
	} {
		if got := VMMAC(netip.MustParseAddr(tc.addr)).String(); got != tc.want {
			t.Errorf("VMMAC(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
