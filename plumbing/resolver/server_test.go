package resolver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// fakeUpstream is a resolver on loopback, over UDP and TCP on one port,
// that answers every name with 192.0.2.7, except big.example. (40
// addresses, more than 512 bytes), and counts the queries it gets.
type fakeUpstream struct {
	addr    netip.AddrPort
	queries atomic.Int64
}

func startUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.queries.Add(1)
		resp := new(dns.Msg)
		resp.SetReply(req)
		n := 1
		if req.Question[0].Name == "big.example." {
			n = 40
		}
		for i := range n {
			rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", req.Question[0].Name, 7+i))
			resp.Answer = append(resp.Answer, rr)
		}
		_ = w.WriteMsg(resp)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	ln, err := net.Listen("tcp", u.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

// fixed is an Upstream with a fixed list.
type fixed []netip.AddrPort

func (f fixed) Servers(skip func(netip.Addr) bool) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, a := range f {
		if !skip(a.Addr()) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no resolver")
	}
	return out, nil
}

func listenBlue(t *testing.T, up Upstream, skip func(netip.Addr) bool) *Server {
	t.Helper()
	if skip == nil {
		skip = func(netip.Addr) bool { return false }
	}
	s, err := Listen(t.Context(), Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstream: up, Skip: skip}, blue)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func ask(t *testing.T, proto string, at netip.AddrPort, req *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: proto}
	resp, _, err := c.ExchangeContext(t.Context(), req, at.String())
	if err != nil {
		t.Fatalf("ask %s over %s: %v", req.Question[0].Name, proto, err)
	}
	return resp
}

func addrs(resp *dns.Msg) []string {
	var out []string
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestServer(t *testing.T) {
	up := startUpstream(t)
	s := listenBlue(t, fixed{up.addr}, nil)
	at := map[string]netip.AddrPort{"udp": s.UDPAddr(), "tcp": s.TCPAddr()}

	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			before := up.queries.Load()
			if got := addrs(ask(t, proto, at[proto], query("web.blue.internal.", dns.TypeA))); len(got) != 1 || got[0] != "10.10.1.2" {
				t.Errorf("web.blue.internal: %v, want 10.10.1.2", got)
			}
			if got := addrs(ask(t, proto, at[proto], query("db.", dns.TypeA))); len(got) != 1 || got[0] != "10.10.1.3" {
				t.Errorf("db: %v, want 10.10.1.3", got)
			}
			if resp := ask(t, proto, at[proto], query("nope.", dns.TypeA)); resp.Rcode != dns.RcodeNameError {
				t.Errorf("nope: %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
			}
			if n := up.queries.Load() - before; n != 0 {
				t.Errorf("the upstream got %d queries for the network's own names, want 0", n)
			}
			req := query("deb.debian.org.", dns.TypeA)
			resp := ask(t, proto, at[proto], req)
			if got := addrs(resp); len(got) != 1 || got[0] != "192.0.2.7" || resp.Id != req.Id {
				t.Errorf("deb.debian.org: %v id %d, want the upstream's 192.0.2.7 with the query's id %d", got, resp.Id, req.Id)
			}
			if n := up.queries.Load() - before; n != 1 {
				t.Errorf("the upstream got %d queries, want 1 (the forwarded one)", n)
			}
		})
	}

	t.Run("a big answer is cut to 512 bytes over UDP, whole over TCP", func(t *testing.T) {
		resp := ask(t, "udp", s.UDPAddr(), query("big.example.", dns.TypeA))
		if !resp.Truncated || len(addrs(resp)) >= 40 {
			t.Errorf("over UDP: truncated %v with %d addresses, want the TC bit and fewer than 40", resp.Truncated, len(addrs(resp)))
		}
		resp.Compress = true // as it was sent
		if b, _ := resp.Pack(); len(b) > dns.MinMsgSize {
			t.Errorf("over UDP: %d bytes, want at most %d", len(b), dns.MinMsgSize)
		}
		resp = ask(t, "tcp", s.TCPAddr(), query("big.example.", dns.TypeA))
		if resp.Truncated || len(addrs(resp)) != 40 {
			t.Errorf("over TCP: truncated %v with %d addresses, want all 40", resp.Truncated, len(addrs(resp)))
		}
	})

	t.Run("EDNS asked, EDNS answered", func(t *testing.T) {
		req := query("web.", dns.TypeA)
		req.SetEdns0(4096, false)
		if opt := ask(t, "udp", s.UDPAddr(), req).IsEdns0(); opt == nil || opt.UDPSize() != ednsSize {
			t.Errorf("answer's OPT %v, want one with size %d", opt, ednsSize)
		}
		if opt := ask(t, "udp", s.UDPAddr(), query("web.", dns.TypeA)).IsEdns0(); opt != nil {
			t.Errorf("answer to a query without EDNS has OPT %v", opt)
		}
	})

	t.Run("the zone changes without a restart", func(t *testing.T) {
		z := blue
		z.Hosts = map[string]netip.Addr{"api": netip.MustParseAddr("10.10.1.9")}
		s.SetZone(z)
		t.Cleanup(func() { s.SetZone(blue) })
		if resp := ask(t, "udp", s.UDPAddr(), query("web.blue.internal.", dns.TypeA)); resp.Rcode != dns.RcodeNameError {
			t.Errorf("web after its removal: %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
		}
		if got := addrs(ask(t, "udp", s.UDPAddr(), query("api.", dns.TypeA))); len(got) != 1 || got[0] != "10.10.1.9" {
			t.Errorf("api after its creation: %v, want 10.10.1.9", got)
		}
	})
}

func TestServerForwardFails(t *testing.T) {
	// A port nobody listens on: the kernel refuses at once.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	up := startUpstream(t)

	tests := []struct {
		name string
		up   fixed
		skip func(netip.Addr) bool
		fill bool // every forward slot taken
		want int
	}{
		{"the upstream is down", fixed{closed}, nil, false, dns.RcodeServerFailure},
		{"the next upstream answers", fixed{closed, up.addr}, nil, false, dns.RcodeSuccess},
		{"the only upstream is a gateway", fixed{up.addr}, func(a netip.Addr) bool { return a == up.addr.Addr() }, false, dns.RcodeServerFailure},
		{"too many forwards under way", fixed{up.addr}, nil, true, dns.RcodeServerFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := listenBlue(t, tt.up, tt.skip)
			if tt.fill {
				for range maxForwards {
					s.forwards <- struct{}{}
				}
			}
			before := up.queries.Load()
			resp := ask(t, "udp", s.UDPAddr(), query("deb.debian.org.", dns.TypeA))
			if resp.Rcode != tt.want {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.want])
			}
			if tt.fill && up.queries.Load() != before {
				t.Errorf("the upstream was asked while every forward slot was taken")
			}
		})
	}
}

// A query from outside the network (and not from the machine itself) is
// refused, answered names and forwarded ones alike; the network's own
// addresses are answered (the control).
func TestServerRefusesOutsiders(t *testing.T) {
	up := startUpstream(t)
	s := listenBlue(t, fixed{up.addr}, nil)
	tests := []struct {
		from string
		name string
		want int
	}{
		{"192.0.2.1", "web.", dns.RcodeRefused},
		{"192.0.2.1", "deb.debian.org.", dns.RcodeRefused},
		{"10.10.2.5", "web.", dns.RcodeRefused},
		{"10.10.1.5", "web.", dns.RcodeSuccess},
		{"10.10.1.1", "deb.debian.org.", dns.RcodeSuccess},
		{"127.0.0.1", "web.", dns.RcodeSuccess},
	}
	for _, tt := range tests {
		resp := s.respond("udp", netip.MustParseAddr(tt.from), query(tt.name, dns.TypeA))
		if resp.Rcode != tt.want {
			t.Errorf("%s from %s: %s, want %s", tt.name, tt.from, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.want])
		}
	}
}

func TestServerClose(t *testing.T) {
	s, err := Listen(t.Context(), Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Upstream: fixed{}}, blue)
	if err != nil {
		t.Fatal(err)
	}
	ask(t, "tcp", s.TCPAddr(), query("web.", dns.TypeA)) // it serves
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Both ports are free again: the sockets are closed.
	pc, err := net.ListenPacket("udp", s.UDPAddr().String())
	if err != nil {
		t.Fatalf("udp %s after Close: %v", s.UDPAddr(), err)
	}
	pc.Close()
	ln, err := net.Listen("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatalf("tcp %s after Close: %v", s.TCPAddr(), err)
	}
	ln.Close()
	c := &dns.Client{Net: "tcp"}
	if _, _, err := c.ExchangeContext(context.Background(), query("web.", dns.TypeA), s.TCPAddr().String()); err == nil {
		t.Errorf("a query over TCP after Close was answered")
	}
}
