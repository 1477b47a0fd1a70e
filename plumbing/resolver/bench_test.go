package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkQuery asks a server on loopback over UDP, one query at a time:
// a name it answers itself, and one it forwards to an upstream on
// loopback. Compare the two side by side (the forwarded one pays a second
// round trip and the upstream's work).
func BenchmarkQuery(b *testing.B) {
	up := startUpstream(b)
	s, err := Listen(b.Context(), Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstream: fixed{up.addr},
		Skip: func(netip.Addr) bool { return false }}, blue)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	for _, bc := range []struct{ name, q string }{{"own", "web.blue.internal."}, {"forwarded", "deb.debian.org."}} {
		b.Run(bc.name, func(b *testing.B) {
			c := &dns.Client{Net: "udp"}
			conn, err := c.Dial(s.UDPAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			req := query(bc.q, dns.TypeA)
			b.ReportAllocs()
			for b.Loop() {
				resp, _, err := c.ExchangeWithConn(req, conn)
				if err != nil || len(resp.Answer) != 1 {
					b.Fatalf("%s: %v %v", bc.q, resp, err)
				}
			}
		})
	}
}
