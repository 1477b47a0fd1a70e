package resolver

import (
	"maps"
	"net/netip"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/miekg/dns"
)

// Domain is the top-level domain of the networks' names:
// NAME.NETWORK.internal.
const Domain = helperapi.DomainSuffix

// Record and negative-answer lifetimes, in seconds: short, so a VM made or
// removed is seen within seconds by guests that cache.
const (
	hostTTL     = 10
	negativeTTL = 5
)

// Zone is what one network's resolver answers from: the network, its
// subnet and gateway, and its VMs by name.
type Zone struct {
	Network string
	Subnet  netip.Prefix
	Gateway netip.Addr
	// Hosts are the network's VMs: name → address.
	Hosts map[string]netip.Addr
	// Serial is the cloud's generation the zone comes from (SOA serial).
	Serial int64
}

// Origin is the zone's domain, fully qualified: NETWORK.internal.
func (z *Zone) Origin() string { return helperapi.NetworkDomain(z.Network) + "." }

// Equal tells whether two zones answer alike.
func (z Zone) Equal(o Zone) bool {
	return z.Network == o.Network && z.Subnet == o.Subnet && z.Gateway == o.Gateway && maps.Equal(z.Hosts, o.Hosts)
}

// Zones are the zones spec asks this machine to serve: one per network of
// the spec that has a gateway (an IPv4 subnet of /30 or larger), with the
// VMs the spec's desired state places on it. A VM whose name is not a
// valid name, or whose address is outside the subnet or the gateway's, is
// left out.
func Zones(spec helperapi.Spec) []Zone {
	var zones []Zone
	for _, n := range spec.Networks {
		gw := helperapi.GatewayAddr(n.Subnet)
		if !gw.IsValid() || !helperapi.ValidName(n.Name) {
			continue
		}
		z := Zone{Network: n.Name, Subnet: n.Subnet.Masked(), Gateway: gw, Hosts: map[string]netip.Addr{},
			Serial: spec.Generation}
		if spec.Desired != nil {
			for _, v := range spec.Desired.VMs {
				if v.Network != n.Name || !helperapi.ValidName(v.Name) || !z.Subnet.Contains(v.Address) || v.Address == gw {
					continue
				}
				z.Hosts[v.Name] = v.Address
			}
		}
		zones = append(zones, z)
	}
	return zones
}

// Answer answers req from the zone, or returns nil when req is for the
// rest of the world and must be forwarded upstream.
func (z *Zone) Answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp
	}
	if len(req.Question) != 1 {
		resp.SetRcode(req, dns.RcodeFormatError)
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(dns.Fqdn(q.Name))
	labels := dns.CountLabel(name)
	origin := z.Origin()
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		resp.SetRcode(req, dns.RcodeRefused)
	case name == origin:
		resp.Authoritative = true
		if q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY {
			resp.Answer = append(resp.Answer, z.soa())
		} else {
			resp.Ns = append(resp.Ns, z.soa())
		}
	case strings.HasSuffix(name, "."+origin):
		z.host(resp, strings.TrimSuffix(name, "."+origin), q.Qtype)
	case name == Domain+"." || strings.HasSuffix(name, "."+Domain+"."):
		// Another network's names, or none: never this network's business,
		// never the internet's.
		resp.SetRcode(req, dns.RcodeNameError)
	case labels == 1:
		z.host(resp, strings.TrimSuffix(name, "."), q.Qtype)
	case strings.HasSuffix(name, ".in-addr.arpa."):
		a, ok := reverseAddr(name)
		if !ok || !z.Subnet.Contains(a) {
			return nil
		}
		z.pointer(resp, a, q.Qtype)
	default:
		return nil
	}
	return resp
}

// host answers a query for the VM named label (a single label, or none).
func (z *Zone) host(resp *dns.Msg, label string, qtype uint16) {
	resp.Authoritative = true
	a, ok := z.Hosts[label]
	if !ok {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = append(resp.Ns, z.soa())
		return
	}
	if qtype != dns.TypeA && qtype != dns.TypeANY {
		resp.Ns = append(resp.Ns, z.soa()) // the name exists, with no such record
		return
	}
	resp.Answer = append(resp.Answer, &dns.A{
		Hdr: dns.RR_Header{Name: resp.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: hostTTL},
		A:   a.AsSlice(),
	})
}

// pointer answers a reverse query for a, an address of the subnet.
func (z *Zone) pointer(resp *dns.Msg, a netip.Addr, qtype uint16) {
	resp.Authoritative = true
	for name, h := range z.Hosts {
		if h != a {
			continue
		}
		if qtype == dns.TypePTR || qtype == dns.TypeANY {
			resp.Answer = append(resp.Answer, &dns.PTR{
				Hdr: dns.RR_Header{Name: resp.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: hostTTL},
				Ptr: name + "." + z.Origin(),
			})
		}
		return
	}
	resp.Rcode = dns.RcodeNameError
}

func (z *Zone) soa() *dns.SOA {
	o := z.Origin()
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: o, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negativeTTL},
		Ns:  o, Mbox: "hostmaster." + o, Serial: uint32(z.Serial),
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: negativeTTL,
	}
}

// reverseAddr parses d.c.b.a.in-addr.arpa. into a.b.c.d.
func reverseAddr(name string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	for i, j := 0, 3; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	a, err := netip.ParseAddr(strings.Join(parts, "."))
	return a, err == nil && a.Is4()
}
