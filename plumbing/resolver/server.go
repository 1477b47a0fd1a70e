package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// Bounds of one server: what a guest, or a flood of queries from one, can
// take of the helper.
const (
	// maxForwards bounds the queries forwarded upstream at once; one more
	// gets SERVFAIL at once rather than a goroutine that waits.
	maxForwards = 64
	// maxTCPConns bounds the TCP connections served at once; more wait in
	// the kernel's backlog.
	maxTCPConns = 32
	// forwardTry is one upstream's time to answer, forwardTotal all of
	// them together.
	forwardTry   = 2 * time.Second
	forwardTotal = 4 * time.Second
	// readSize is the largest query read over UDP; answers over UDP fit
	// the client's EDNS size, or 512 bytes without EDNS.
	readSize = 4096
	// ednsSize is the UDP payload size the server advertises (the DNS
	// flag day's 1232: no fragments on any path).
	ednsSize = 1232
	// stopWait bounds how long Close waits for answers under way.
	stopWait = 3 * time.Second
	// warnEvery spaces the warnings about failed forwards.
	warnEvery = time.Minute
)

// Upstream lists the resolvers to forward to, less those skip names.
// *Upstreams is one.
type Upstream interface {
	Servers(skip func(netip.Addr) bool) ([]netip.AddrPort, error)
}

// Config configures one server.
type Config struct {
	// Addr is where it listens, over UDP and TCP: the gateway, port 53.
	// Port 0 takes a free UDP port and the same TCP port.
	Addr netip.AddrPort
	// Upstream lists the resolvers forwarded to.
	Upstream Upstream
	// Skip leaves resolvers out of Upstream's list (the gateways).
	Skip func(netip.Addr) bool
	// Log receives failures to forward; never a query's name.
	Log *slog.Logger
}

// Server answers one network's queries. Its zone can change while it
// runs (SetZone).
type Server struct {
	cfg      Config
	zone     atomic.Pointer[Zone]
	forwards chan struct{}
	udp, tcp *dns.Server
	udpAddr  netip.AddrPort
	tcpAddr  netip.AddrPort
	ctx      context.Context // ends on Close: forwards under way stop
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	lastWarn atomic.Int64 // unix nanoseconds of the last warning
}

// Listen starts a server for z on cfg.Addr.
func Listen(ctx context.Context, cfg Config, z Zone) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	lc := listenConfig()
	pc, err := lc.ListenPacket(ctx, "udp", cfg.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen on udp %s for network %q's names: %w", cfg.Addr, z.Network, explainListen(err))
	}
	udpAddr := netip.MustParseAddrPort(pc.LocalAddr().String())
	tcpAt := netip.AddrPortFrom(cfg.Addr.Addr(), udpAddr.Port())
	ln, err := lc.Listen(ctx, "tcp", tcpAt.String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("listen on tcp %s for network %q's names: %w", tcpAt, z.Network, explainListen(err))
	}
	s := &Server{cfg: cfg, forwards: make(chan struct{}, maxForwards), udpAddr: udpAddr,
		tcpAddr: netip.MustParseAddrPort(ln.Addr().String())}
	s.zone.Store(&z)
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.udp = &dns.Server{PacketConn: pc, Handler: s.handler("udp"), UDPSize: readSize}
	s.tcp = &dns.Server{Listener: netutil.LimitListener(ln, maxTCPConns), Handler: s.handler("tcp"),
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		ended := make(chan error, 1)
		s.wg.Go(func() { ended <- srv.ActivateAndServe() })
		select {
		case <-started:
		case err := <-ended:
			s.Close()
			return nil, fmt.Errorf("serve network %q's names on %s: %w", z.Network, cfg.Addr, err)
		}
	}
	return s, nil
}

// UDPAddr and TCPAddr are where the server listens.
func (s *Server) UDPAddr() netip.AddrPort { return s.udpAddr }
func (s *Server) TCPAddr() netip.AddrPort { return s.tcpAddr }

// Zone is what the server answers from now.
func (s *Server) Zone() Zone { return *s.zone.Load() }

// SetZone changes what the server answers from, for the next query on.
func (s *Server) SetZone(z Zone) { s.zone.Store(&z) }

// Close stops the server: its sockets close, forwards under way end, and
// it returns once every answer under way is written or stopWait passed.
func (s *Server) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv == nil {
			continue
		}
		if err := srv.ShutdownContext(ctx); err != nil && !isNotStarted(err) {
			errs = append(errs, err)
		}
	}
	// A server that never started still holds its socket.
	s.udp.PacketConn.Close()
	s.tcp.Listener.Close()
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop network %q's names on %s: %w", s.Zone().Network, s.udpAddr, err)
	}
	return nil
}

func isNotStarted(err error) bool { return err != nil && err.Error() == "dns: server not started" }

func (s *Server) handler(proto string) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		resp := s.respond(proto, remoteAddr(w.RemoteAddr()), req)
		if proto == "udp" {
			resp.Truncate(clientSize(req))
		}
		_ = w.WriteMsg(resp)
	}
}

// respond answers req from the zone, or forwards it. Only the network's
// own addresses and the machine itself (loopback) are answered: the
// gateway is no open resolver, whatever the firewall lets through.
func (s *Server) respond(proto string, from netip.Addr, req *dns.Msg) *dns.Msg {
	z := s.zone.Load()
	if !from.IsLoopback() && !z.Subnet.Contains(from) {
		return rcode(req, dns.RcodeRefused)
	}
	resp := z.Answer(req)
	if resp == nil {
		return s.forward(proto, req)
	}
	if req.IsEdns0() != nil {
		resp.SetEdns0(ednsSize, false)
	}
	return resp
}

// forward asks the machine's resolvers, one after the other, and relays
// the first answer (whatever its code). None: SERVFAIL.
func (s *Server) forward(proto string, req *dns.Msg) *dns.Msg {
	select {
	case s.forwards <- struct{}{}:
		defer func() { <-s.forwards }()
	default:
		return rcode(req, dns.RcodeServerFailure)
	}
	servers, err := s.cfg.Upstream.Servers(s.cfg.Skip)
	if err != nil {
		s.warn(err)
		return rcode(req, dns.RcodeServerFailure)
	}
	ctx, cancel := context.WithTimeout(s.ctx, forwardTotal)
	defer cancel()
	c := &dns.Client{Net: proto, Timeout: forwardTry, UDPSize: uint16(min(max(clientSize(req), readSize), dns.MaxMsgSize))}
	var errs []error
	for _, up := range servers {
		resp, _, err := c.ExchangeContext(ctx, req.Copy(), up.String())
		if err == nil {
			resp.Id = req.Id
			return resp
		}
		errs = append(errs, fmt.Errorf("%s: %w", up, err))
		if ctx.Err() != nil {
			break
		}
	}
	s.warn(fmt.Errorf("forward to the machine's resolvers: %w", errors.Join(errs...)))
	return rcode(req, dns.RcodeServerFailure)
}

// warn logs a forwarding failure at most once every warnEvery, not once
// per query: a guest must not be able to fill the machine's log.
func (s *Server) warn(err error) {
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last < int64(warnEvery) || !s.lastWarn.CompareAndSwap(last, now) {
		return
	}
	s.cfg.Log.Warn("names: cannot forward", "network", s.Zone().Network, "err", err)
}

func rcode(req *dns.Msg, code int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, code)
	resp.RecursionAvailable = true
	return resp
}

// clientSize is the largest UDP answer the client takes: its EDNS size,
// or 512 bytes.
func clientSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return max(int(opt.UDPSize()), dns.MinMsgSize)
	}
	return dns.MinMsgSize
}

func remoteAddr(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
