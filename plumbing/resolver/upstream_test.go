package resolver

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestUpstreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(text string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	gw := netip.MustParseAddr("10.10.1.1")
	skip := func(a netip.Addr) bool { return a == gw }
	strs := func(aps []netip.AddrPort) []string {
		var out []string
		for _, ap := range aps {
			out = append(out, ap.String())
		}
		return out
	}
	u := NewUpstreams(path)

	if _, err := u.Servers(skip); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("no file: error %v, want one naming %s", err, path)
	}

	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	write("# a comment\nsearch example.com\nnameserver 10.10.1.1\nnameserver dns.example\nnameserver 127.0.0.53\n"+
		"options edns0 trust-ad\nnameserver fe80::1%eth0\nnameserver ::ffff:192.0.2.53\nnameserver 192.0.2.54\n", t0)
	got, err := u.Servers(skip)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.53:53", "[fe80::1%eth0]:53", "192.0.2.53:53"}
	if diff := cmp.Diff(want, strs(got)); diff != "" {
		t.Errorf("servers: gateways and names left out, at most three (-want +got):\n%s", diff)
	}

	write("nameserver 192.0.2.99\n", t0.Add(time.Second))
	got, err = u.Servers(skip)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"192.0.2.99:53"}, strs(got)); diff != "" {
		t.Errorf("servers after the file changed (-want +got):\n%s", diff)
	}

	write("nameserver 10.10.1.1\n", t0.Add(2*time.Second))
	if _, err := u.Servers(skip); err == nil || !strings.Contains(err.Error(), "no resolver") {
		t.Errorf("only a gateway listed: error %v, want no resolver", err)
	}
}
