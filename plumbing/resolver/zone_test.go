package resolver

import (
	"net/netip"

	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

var blue = Zone{
	Network: "blue", Subnet: netip.MustParsePrefix("10.10.1.0/24"), Gateway: netip.MustParseAddr("10.10.1.1"),
	Hosts: map[string]netip.Addr{"web": netip.MustParseAddr("10.10.1.2"), "db": netip.MustParseAddr("10.10.1.3")},
}

// answer is what a test reads from a reply: code, flags and records as
// text.
type answer struct {
	Rcode   string
	AA      bool
	Answer  []string
	NS      []string
	Forward bool
}

func summarize(resp *dns.Msg) answer {
	if resp == nil {
		return answer{Forward: true}
	}
	a := answer{Rcode: dns.RcodeToString[resp.Rcode], AA: resp.Authoritative}
	for _, rr := range resp.Answer {
		a.Answer = append(a.Answer, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	for _, rr := range resp.Ns {
		a.NS = append(a.NS, dns.TypeToString[rr.Header().Rrtype]+" "+rr.Header().Name)
	}
	return a
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestAnswer(t *testing.T) {
	soa := []string{"SOA blue.internal."}
	tests := []struct {
		name string
		req  *dns.Msg
		want answer
	}{
		{"short name", query("web.", dns.TypeA),
			answer{Rcode: "NOERROR", AA: true, Answer: []string{"web. 10 IN A 10.10.1.2"}}},
		{"full name", query("web.blue.internal.", dns.TypeA),
			answer{Rcode: "NOERROR", AA: true, Answer: []string{"web.blue.internal. 10 IN A 10.10.1.2"}}},
		{"any case, answered as asked", query("WeB.Blue.INTERNAL.", dns.TypeA),
			answer{Rcode: "NOERROR", AA: true, Answer: []string{"WeB.Blue.INTERNAL. 10 IN A 10.10.1.2"}}},
		{"ANY gives the A record", query("db.blue.internal.", dns.TypeANY),
			answer{Rcode: "NOERROR", AA: true, Answer: []string{"db.blue.internal. 10 IN A 10.10.1.3"}}},
		{"AAAA of a VM: the name exists, no record", query("web.blue.internal.", dns.TypeAAAA),
			answer{Rcode: "NOERROR", AA: true, NS: soa}},
		{"unknown VM, full name", query("nope.blue.internal.", dns.TypeA),
			answer{Rcode: "NXDOMAIN", AA: true, NS: soa}},
		{"unknown VM, short name: never sent to the internet", query("nope.", dns.TypeA),
			answer{Rcode: "NXDOMAIN", AA: true, NS: soa}},
		{"a name below a VM's", query("x.web.blue.internal.", dns.TypeA),
			answer{Rcode: "NXDOMAIN", AA: true, NS: soa}},
		{"the zone itself", query("blue.internal.", dns.TypeSOA),
			answer{Rcode: "NOERROR", AA: true, Answer: []string{
				"blue.internal. 5 IN SOA blue.internal. hostmaster.blue.internal. 0 3600 600 86400 5"}}},
		{"the zone itself, A", query("blue.internal.", dns.TypeA),
			answer{Rcode: "NOERROR", AA: true, NS: soa}},
		{"another network's name", query("web.red.internal.", dns.TypeA), answer{Rcode: "NXDOMAIN"}},
		{"the top-level domain", query("internal.", dns.TypeA), answer{Rcode: "NXDOMAIN"}},
		{"a VM's address, reversed", query("2.1.10.10.in-addr.arpa.", dns.TypePTR),
			answer{Rcode: "NOERROR", AA: true, Answer: []string{"2.1.10.10.in-addr.arpa. 10 IN PTR web.blue.internal."}}},
		{"a free address of the subnet, reversed", query("9.1.10.10.in-addr.arpa.", dns.TypePTR),
			answer{Rcode: "NXDOMAIN", AA: true}},
		{"an address outside the subnet, reversed: forwarded", query("8.8.8.8.in-addr.arpa.", dns.TypePTR),
			answer{Forward: true}},
		{"a name of the world: forwarded", query("deb.debian.org.", dns.TypeA), answer{Forward: true}},
		{"a name that ends like ours: forwarded", query("web.blue.internal.example.", dns.TypeA), answer{Forward: true}},
		{"CHAOS class: refused", func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), answer{Rcode: "REFUSED"}},
		{"two questions: format error", func() *dns.Msg {
			m := query("web.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), answer{Rcode: "FORMERR"}},
		{"not a query: not implemented", func() *dns.Msg {
			m := query("web.", dns.TypeA)
			m.Opcode = dns.OpcodeUpdate
			return m
		}(), answer{Rcode: "NOTIMP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := blue.Answer(tt.req)
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if got != nil && got.Id != tt.req.Id {
				t.Errorf("answer id %d, want the query's %d", got.Id, tt.req.Id)
			}
		})
	}
}

func TestZones(t *testing.T) {
	spec := helperapi.Spec{
		Generation: 7,
		Networks: []helperapi.Network{
			{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24")},
			{Name: "red", ID: 2, Subnet: netip.MustParsePrefix("10.10.2.0/24")},
			{Name: "bare", ID: 3}, // no subnet: no gateway, no names
		},
		Desired: &helperapi.Desired{Generation: 7, VMs: []helperapi.DesiredVM{
			{Name: "web", Machine: "m2", Network: "blue", Address: netip.MustParseAddr("10.10.1.2")},
			{Name: "db", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.10.1.3")},
			{Name: "cache", Machine: "m1", Network: "red", Address: netip.MustParseAddr("10.10.2.2")},
			{Name: "elsewhere", Machine: "m3", Network: "green", Address: netip.MustParseAddr("10.10.3.2")},
			{Name: "outside", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.10.9.2")},
			{Name: "gw", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.10.1.1")},
			{Name: "Bad_Name", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.10.1.4")},
		}},
	}
	got := Zones(spec)
	want := []Zone{
		{Network: "blue", Subnet: netip.MustParsePrefix("10.10.1.0/24"), Gateway: netip.MustParseAddr("10.10.1.1"), Serial: 7,
			Hosts: map[string]netip.Addr{"web": netip.MustParseAddr("10.10.1.2"), "db": netip.MustParseAddr("10.10.1.3")}},
		{Network: "red", Subnet: netip.MustParsePrefix("10.10.2.0/24"), Gateway: netip.MustParseAddr("10.10.2.1"), Serial: 7,
			Hosts: map[string]netip.Addr{"cache": netip.MustParseAddr("10.10.2.2")}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("zones (-want +got):\n%s", diff)
	}
	// Without a desired state: the zones, with no VMs.
	spec.Desired = nil
	for _, z := range Zones(spec) {
		if len(z.Hosts) != 0 {
			t.Errorf("zone %s without a desired state has VMs %v", z.Network, z.Hosts)
		}
	}
}
