package helperapi

import (
	"net/netip"
	"strings"
	"testing"
)

func TestGatewayAddr(t *testing.T) {
	for _, tc := range []struct{ subnet, want string }{
		{"10.100.1.0/24", "10.100.1.1"},
		{"10.100.1.77/24", "10.100.1.1"},
		{"10.0.0.0/30", "10.0.0.1"},
		{"10.0.0.0/31", ""},
		{"fd00::/64", ""},
	} {
		got := GatewayAddr(netip.MustParsePrefix(tc.subnet))
		if (tc.want == "" && got.IsValid()) || (tc.want != "" && got.String() != tc.want) {
			t.Errorf("GatewayAddr(%s) = %v, want %q", tc.subnet, got, tc.want)
		}
	}
	if GatewayAddr(netip.Prefix{}).IsValid() {
		t.Error("GatewayAddr of no subnet is valid")
	}
}

func TestGatewayMAC(t *testing.T) {
	a, b := GatewayMAC(1), GatewayMAC(2)
	if a.String() == b.String() {
		t.Fatalf("networks 1 and 2 share gateway MAC %s", a)
	}
	if a[0]&1 != 0 || a[0]&2 == 0 {
		t.Fatalf("gateway MAC %s is not locally administered unicast", a)
	}
	if got := GatewayMAC(0x010203).String(); got != "02:62:74:01:02:03" {
		t.Fatalf("GatewayMAC(0x010203) = %s", got)
	}
}

func TestCheckVMAddress(t *testing.T) {
	subnet := netip.MustParsePrefix("10.100.1.0/24")
	for _, tc := range []struct {
		subnet netip.Prefix
		addr   string
		want   string // a part of the error; "" for none
	}{
		{subnet, "10.100.1.2", ""},
		{subnet, "10.100.1.254", ""},
		{subnet, "10.100.1.1", `network "blue"'s gateway`},
		{subnet, "10.100.1.0", `"blue"'s network address`},
		{subnet, "10.100.1.255", "broadcast address"},
		{subnet, "10.100.2.5", `outside network "blue"'s subnet`},
		{subnet, "fd00::5", "want an IPv4 address"},
		{subnet, "", "missing"},
		{netip.MustParsePrefix("10.0.0.0/30"), "10.0.0.2", ""},
		{netip.MustParsePrefix("10.0.0.0/30"), "10.0.0.3", "broadcast address"},
		{netip.Prefix{}, "192.0.2.1", ""},
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = netip.MustParseAddr(tc.addr)
		}
		err := CheckVMAddress("blue", tc.subnet, a)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckVMAddress(%s, %s) = %v, want nil", tc.subnet, tc.addr, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckVMAddress(%s, %s) = %v, want an error saying %q", tc.subnet, tc.addr, err, tc.want)
		}
	}
}
