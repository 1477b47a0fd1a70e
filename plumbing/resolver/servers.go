package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Port is where guests ask: DNS.
const Port = 53

// Options configure Servers.
type Options struct {
	// Upstream lists the resolvers forwarded to (default: the machine's
	// DefaultResolvConf).
	Upstream Upstream
	// Port overrides Port (0: 53).
	Port int
	// Log receives what the servers do.
	Log *slog.Logger
}

// Servers are the machine's resolvers, one per network it serves.
type Servers struct {
	opts     Options
	gateways atomic.Pointer[map[netip.Addr]bool]

	mu    sync.Mutex
	byNet map[string]*Server
}

// NewServers returns a set of no servers.
func NewServers(o Options) *Servers {
	if o.Upstream == nil {
		o.Upstream = NewUpstreams("")
	}
	if o.Port == 0 {
		o.Port = Port
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Servers{opts: o, byNet: map[string]*Server{}}
	s.gateways.Store(&map[netip.Addr]bool{})
	return s
}

// isGateway tells an address the servers listen on: never an upstream.
func (s *Servers) isGateway(a netip.Addr) bool { return (*s.gateways.Load())[a] }

// Converge makes the running servers those of zones: it stops the servers
// of networks no longer served (or whose gateway moved), starts the
// missing ones and gives the others their new zone, and says what it
// changed. It is idempotent; what fails to start is in the error, and a
// later Converge tries it again.
func (s *Servers) Converge(ctx context.Context, zones []Zone) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]Zone{}
	gws := map[netip.Addr]bool{}
	for _, z := range zones {
		want[z.Network] = z
		gws[z.Gateway] = true
	}
	var changes []string
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.byNet)) {
		srv := s.byNet[name]
		if z, ok := want[name]; ok && z.Gateway == srv.Zone().Gateway {
			continue
		}
		if err := srv.Close(); err != nil {
			errs = append(errs, err)
		}
		delete(s.byNet, name)
		changes = append(changes, fmt.Sprintf("stop names of network %s on %s", name, srv.UDPAddr()))
	}
	// Old gateways stay left out of the upstreams until their servers
	// stopped (above), new ones before they start.
	s.gateways.Store(&gws)
	for _, z := range zones {
		if srv, ok := s.byNet[z.Network]; ok {
			if !srv.Zone().Equal(z) {
				changes = append(changes, fmt.Sprintf("set names of network %s: %d VMs", z.Network, len(z.Hosts)))
			}
			srv.SetZone(z)
			continue
		}
		srv, err := Listen(ctx, Config{Addr: netip.AddrPortFrom(z.Gateway, uint16(s.opts.Port)),
			Upstream: s.opts.Upstream, Skip: s.isGateway, Log: s.opts.Log}, z)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.byNet[z.Network] = srv
		changes = append(changes, fmt.Sprintf("serve names of network %s on %s: %d VMs", z.Network, srv.UDPAddr(), len(z.Hosts)))
	}
	return changes, errors.Join(errs...)
}

// Missing names the zones that have no server running, for Check.
func (s *Servers) Missing(zones []Zone) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, z := range zones {
		if srv, ok := s.byNet[z.Network]; !ok || srv.Zone().Gateway != z.Gateway {
			out = append(out, z.Network)
		}
	}
	return out
}

// Server returns the running server of network, if any.
func (s *Servers) Server(network string) (*Server, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, ok := s.byNet[network]
	return srv, ok
}

// Close stops every server.
func (s *Servers) Close() error {
	_, err := s.Converge(context.Background(), nil)
	return err
}
