package plumbing_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/miekg/dns"
)

// Names on a lab of two machines running the real helper daemon: network
// blue spans both; probes stand in for VMs, db on m1 and web on m2, at
// the addresses the desired state gives them. db asks its own machine's
// gateway for web, which lives on the other machine.

var (
	namesNet     = helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.1.0/24"), Tunnel: helperapi.TunnelVXLAN}
	namesGateway = helperapi.GatewayAddr(namesNet.Subnet)
	namesDB      = netip.MustParseAddr("10.20.1.11")
	namesWeb     = netip.MustParseAddr("10.20.1.12")
	namesAPI     = netip.MustParseAddr("10.20.1.13")
)

func namesDesired(vms ...helperapi.DesiredVM) *helperapi.Desired {
	return &helperapi.Desired{Networks: []helperapi.DesiredNetwork{
		{Name: namesNet.Name, Subnet: namesNet.Subnet, ID: namesNet.ID, Tunnel: namesNet.Tunnel, Machines: []string{"m1", "m2"}},
	}, VMs: vms}
}

func TestVMNames(t *testing.T) {
	needChainLab(t)
	testbed.NeedPrograms(t, "unshare", "getent", "ss")
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()

	dir := t.TempDir()
	b := testbed.Butter{Path: buildButter(t, ctx, dir)}
	lab := testbed.NewLab(t, "dns", sim.Config{Machines: 2})
	m1, m2 := lab.Machines[0], lab.Machines[1]
	logs := map[string]string{}
	helpers, err := b.StartMesh(ctx, lab, testbed.Mesh{Networks: []helperapi.Network{namesNet}}, func(m *sim.Machine) io.Writer {
		f, err := os.Create(filepath.Join(dir, m.Name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		logs[m.Name] = f.Name()
		return f
	})
	if err != nil {
		t.Fatalf("start the mesh: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, path := range logs {
				data, _ := os.ReadFile(path)
				t.Logf("helper log of %s:\n%s", name, lastLines(string(data), 30))
			}
		}
	})
	apply := func(d *helperapi.Desired) {
		t.Helper()
		for _, m := range lab.Machines {
			spec := helpers.Specs[m.Name]
			spec.Desired = d
			rep, err := b.Apply(ctx, m, spec)
			if err != nil {
				t.Fatalf("apply on %s: %v", m.Name, err)
			}
			t.Logf("%s: apply changed %q", m.Name, rep.Changes)
		}
	}
	apply(namesDesired(
		helperapi.DesiredVM{Name: "db", Machine: "m1", Network: "blue", Address: namesDB},
		helperapi.DesiredVM{Name: "web", Machine: "m2", Network: "blue", Address: namesWeb},
	))
	mtu := helpers.Reports[m1.Name].Networks[0].MTU
	db, err := lab.AddProbe(ctx, m1, plumbing.BridgeName(1), netip.PrefixFrom(namesDB, 24), mtu)
	if err != nil {
		t.Fatal(err)
	}
	web, err := lab.AddProbe(ctx, m2, plumbing.BridgeName(1), netip.PrefixFrom(namesWeb, 24), mtu)
	if err != nil {
		t.Fatal(err)
	}
	gw := netip.AddrPortFrom(namesGateway, 53)

	t.Run("a VM on another machine, by short and full name, over UDP and TCP", func(t *testing.T) {
		for _, proto := range []string{"udp", "tcp"} {
			for _, name := range []string{"web.", "web.blue.internal.", "WEB.Blue.Internal."} {
				code, addrs := lookupIn(t, db.Netns(), proto, gw, name)
				if code != dns.RcodeSuccess || !slices.Equal(addrs, []string{namesWeb.String()}) {
					t.Errorf("%s over %s from db: %s %v, want %s", name, proto, dns.RcodeToString[code], addrs, namesWeb)
				}
			}
		}
		// And the other way round, from m2's own gateway.
		if code, addrs := lookupIn(t, web.Netns(), "udp", gw, "db.blue.internal."); code != dns.RcodeSuccess ||
			!slices.Equal(addrs, []string{namesDB.String()}) {
			t.Errorf("db from web: %s %v, want %s", dns.RcodeToString[code], addrs, namesDB)
		}
	})

	t.Run("an unknown name is NXDOMAIN", func(t *testing.T) {
		for _, name := range []string{"nope.", "nope.blue.internal.", "web.red.internal."} {
			if code, addrs := lookupIn(t, db.Netns(), "udp", gw, name); code != dns.RcodeNameError {
				t.Errorf("%s: %s %v, want NXDOMAIN", name, dns.RcodeToString[code], addrs)
			}
		}
	})

	// The C library's resolver, as a guest's: the gateway as nameserver,
	// blue.internal as search domain.
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte(fmt.Sprintf("nameserver %s\nsearch blue.internal\noptions timeout:2 attempts:2\n", namesGateway)), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := func(ctx context.Context, script string) ([]byte, error) {
		return db.Run(ctx, "unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" /etc/resolv.conf && `+script, "sh", resolv)
	}
	t.Run("a guest's resolver finds web and pings it by name", func(t *testing.T) {
		for _, name := range []string{"web", "web.blue.internal"} {
			out, err := guest(ctx, "getent ahostsv4 "+name+" && ping -c 1 -W 3 "+name)
			if err != nil || !strings.Contains(string(out), namesWeb.String()) {
				t.Errorf("getent and ping %s in db: %v\n%s", name, err, out)
			}
		}
		// The control: a name nobody has is not found, so getent can fail.
		if out, err := guest(ctx, "getent ahostsv4 nope"); err == nil {
			t.Errorf("getent nope in db found %q", out)
		}
	})

	t.Run("a VM made and one removed change the answers without a restart", func(t *testing.T) {
		pids := map[string]int{m1.Name: helpers.Daemons[m1.Name].PID(), m2.Name: helpers.Daemons[m2.Name].PID()}
		apply(namesDesired(
			helperapi.DesiredVM{Name: "web", Machine: "m2", Network: "blue", Address: namesWeb},
			helperapi.DesiredVM{Name: "api", Machine: "m2", Network: "blue", Address: namesAPI},
		))
		if code, addrs := lookupIn(t, db.Netns(), "udp", gw, "api."); code != dns.RcodeSuccess || !slices.Equal(addrs, []string{namesAPI.String()}) {
			t.Errorf("api after it was made: %s %v, want %s", dns.RcodeToString[code], addrs, namesAPI)
		}
		if code, addrs := lookupIn(t, web.Netns(), "udp", gw, "db.blue.internal."); code != dns.RcodeNameError {
			t.Errorf("db after it was removed: %s %v, want NXDOMAIN", dns.RcodeToString[code], addrs)
		}
		for _, m := range lab.Machines {
			select {
			case <-helpers.Daemons[m.Name].Done():
				t.Errorf("the helper daemon on %s exited", m.Name)
			default:
			}
			if p := helpers.Daemons[m.Name].PID(); p != pids[m.Name] {
				t.Errorf("the helper daemon on %s is process %d, was %d", m.Name, p, pids[m.Name])
			}
			drift, err := b.Check(ctx, m, helpers.Specs[m.Name])
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range drift {
				if strings.Contains(d.Problem, "resolver") {
					t.Errorf("%s: drift %+v", m.Name, d)
				}
			}
		}
	})

	t.Run("helper remove stops the resolver", func(t *testing.T) {
		listening := func() string {
			t.Helper()
			out, err := m1.Run(ctx, "ss", "-Hlntu", fmt.Sprintf("src %s and sport = :53", namesGateway))
			if err != nil {
				t.Fatalf("ss on m1: %v", err)
			}
			return strings.TrimSpace(string(out))
		}
		// The control: before, m1 listens on its gateway over UDP and TCP.
		if got := listening(); strings.Count(got, "\n") != 1 {
			t.Fatalf("before remove, m1's sockets on %s:53:\n%s\nwant one UDP and one TCP", namesGateway, got)
		}
		if _, err := b.Helper(ctx, m1, nil, "remove"); err != nil {
			t.Fatalf("helper remove on m1: %v", err)
		}
		if got := listening(); got != "" {
			t.Errorf("after remove, m1 still listens on %s:53:\n%s", namesGateway, got)
		}
	})
}

// lookupIn asks at for name's A records from inside the named network
// namespace, over proto, and returns the answer's code and addresses.
func lookupIn(t *testing.T, netns, proto string, at netip.AddrPort, name string) (int, []string) {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
	conn, err := testbed.MakeInNetns(nsPath(netns), func() (*dns.Conn, error) { return c.Dial(at.String()) })
	if err != nil {
		t.Fatalf("dial %s over %s from %s: %v", at, proto, netns, err)
	}
	defer conn.Close()
	req := new(dns.Msg)
	req.SetQuestion(name, dns.TypeA)
	resp, _, err := c.ExchangeWithConn(req, conn)
	if err != nil {
		t.Fatalf("ask %s for %s over %s from %s: %v", at, name, proto, netns, err)
	}
	var addrs []string
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			addrs = append(addrs, a.A.String())
		}
	}
	return resp.Rcode, addrs
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
