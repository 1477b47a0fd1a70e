package resolver

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultResolvConf is where the machine's own resolvers are listed.
const DefaultResolvConf = "/etc/resolv.conf"

// maxUpstreams bounds how many of the listed resolvers are tried, as the
// C library does (MAXNS).
const maxUpstreams = 3

// Upstreams are the machine's own resolvers, read from a resolv.conf file
// and read again when the file changes (DHCP, NetworkManager and
// systemd-resolved rewrite it).
type Upstreams struct {
	path string

	mu      sync.Mutex
	read    bool
	stamp   fileStamp
	servers []netip.AddrPort
	err     error
}

type fileStamp struct {
	mod  time.Time
	size int64
	ok   bool
}

// NewUpstreams returns the resolvers listed in path (DefaultResolvConf if
// empty).
func NewUpstreams(path string) *Upstreams {
	if path == "" {
		path = DefaultResolvConf
	}
	return &Upstreams{path: path}
}

// Servers returns the resolvers to forward to, in the file's order, less
// those in skip (the gateways the helper serves on: forwarding to one would
// loop), at most three.
func (u *Upstreams) Servers(skip func(netip.Addr) bool) ([]netip.AddrPort, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var st fileStamp
	if fi, err := os.Stat(u.path); err == nil {
		st = fileStamp{mod: fi.ModTime(), size: fi.Size(), ok: true}
	}
	if !u.read || st != u.stamp {
		u.read, u.stamp = true, st
		u.servers, u.err = readResolvConf(u.path)
	}
	if u.err != nil {
		return nil, u.err
	}
	var out []netip.AddrPort
	for _, s := range u.servers {
		if skip != nil && skip(s.Addr()) {
			continue
		}
		out = append(out, s)
		if len(out) == maxUpstreams {
			break
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no resolver to forward to in %s (gateways of butter networks left out); list the machine's resolvers there as nameserver lines", u.path)
	}
	return out, nil
}

func readResolvConf(path string) ([]netip.AddrPort, error) {
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the machine's resolvers: %w", err)
	}
	var out []netip.AddrPort
	for _, s := range cfg.Servers {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			continue // a name or junk: resolv.conf wants addresses
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out, nil
}
