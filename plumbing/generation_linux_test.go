package plumbing_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/google/go-cmp/cmp"
)

// The change protocol on real machines (the namespace tier): refusals
// change nothing, a failed apply puts the machine back on its previous
// spec, and a rotated key costs the mesh only the time it takes to tell
// the peers.

const (
	wgBin     = "/usr/bin/wg"
	bridgeBin = "/usr/sbin/bridge"
)

var (
	genNetwork   = helperapi.Network{Name: "gen", ID: 3, Tunnel: helperapi.TunnelVXLAN, Subnet: netip.MustParsePrefix("10.40.0.0/24")}
	extraNetwork = helperapi.Network{Name: "extra", ID: 4, Tunnel: helperapi.TunnelVXLAN, Subnet: netip.MustParsePrefix("10.41.0.0/24")}
)

// genLab is a lab whose machines run the real helper daemon in a full
// mesh.
type genLab struct {
	lab     *sim.Lab
	butter  testbed.Butter
	mesh    testbed.Mesh
	helpers *testbed.Helpers
	keys    map[string]string // WireGuard public keys by machine name
}

// newGenLab starts a lab of n machines with the mesh and networks up.
func newGenLab(t *testing.T, ctx context.Context, prefix string, n int, networks ...helperapi.Network) *genLab {
	t.Helper()
	needChainLab(t)
	testbed.NeedPrograms(t, wgBin, bridgeBin)
	dir := t.TempDir()
	g := &genLab{butter: testbed.Butter{Path: buildButter(t, ctx, dir)}, mesh: testbed.Mesh{Networks: networks},
		keys: map[string]string{}}
	g.lab = testbed.NewLab(t, prefix, sim.Config{Machines: n})
	logs := map[string]*os.File{}
	for _, m := range g.lab.Machines {
		f, err := os.Create(filepath.Join(dir, m.Name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		logs[m.Name] = f
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, m := range g.lab.Machines {
			data, _ := os.ReadFile(logs[m.Name].Name())
			t.Logf("helper log of %s:\n%s", m.Name, data)
		}
	})
	start := time.Now()
	var err error
	g.helpers, err = g.butter.StartMesh(ctx, g.lab, g.mesh, func(m *sim.Machine) io.Writer { return logs[m.Name] })
	if err != nil {
		t.Fatalf("start the mesh: %v", err)
	}
	for _, m := range g.lab.Machines {
		if g.keys[m.Name], err = g.butter.PublicKey(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("mesh of %d machines up in %v", n, time.Since(start).Round(time.Millisecond))
	return g
}

// specs are every machine's spec, by machine name, for networks at
// generation gen, each with the cloud's desired state of gen (0: bare
// specs, without).
func (g *genLab) specs(t *testing.T, gen int64, networks ...helperapi.Network) map[string]helperapi.Spec {
	t.Helper()
	mesh := g.mesh
	mesh.Networks = networks
	specs, err := testbed.Specs(g.lab, mesh, g.keys)
	if err != nil {
		t.Fatal(err)
	}
	d := &helperapi.Desired{Generation: gen, Mesh: helperapi.DesiredMesh{Prefix: testbed.DefaultMesh, Port: helperapi.DefaultListenPort}}
	var names []string
	for _, m := range g.lab.Machines {
		names = append(names, m.Name)
		d.Machines = append(d.Machines, helperapi.DesiredMachine{Name: m.Name, Address: m.Addr.Addr().String(),
			MeshIP: mesh.Addr(m).Addr(), PublicKey: g.keys[m.Name]})
	}
	for _, n := range networks {
		d.Networks = append(d.Networks, helperapi.DesiredNetwork{Name: n.Name, Subnet: n.Subnet, ID: n.ID, Tunnel: n.Tunnel, Machines: names})
	}
	if gen == 0 {
		return specs // bare specs
	}
	for name, s := range specs {
		s.Generation, s.Desired = gen, d
		specs[name] = s
	}
	return specs
}

// client talks to m's helper daemon through the daemon's own view of the
// file system: its socket is in the machine's private /run.
func (g *genLab) client(t *testing.T, ctx context.Context, m *sim.Machine) *helperapi.Client {
	t.Helper()
	c, err := helperapi.Dial(ctx, g.machinePath(m, helperapi.DefaultSocket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// machinePath is path as m's helper daemon sees it.
func (g *genLab) machinePath(m *sim.Machine, path string) string {
	return fmt.Sprintf("/proc/%d/root%s", g.helpers.Daemons[m.Name].PID(), path)
}

// applyAll applies specs to every machine.
func (g *genLab) applyAll(t *testing.T, ctx context.Context, specs map[string]helperapi.Spec) {
	t.Helper()
	for _, m := range g.lab.Machines {
		if _, err := g.client(t, ctx, m).Apply(ctx, specs[m.Name]); err != nil {
			t.Fatalf("%s: apply generation %d: %v", m.Name, specs[m.Name].Generation, err)
		}
	}
}

// view is what m shows of the helper's work, read with the system's own
// tools, and the helper's files (the key as a hash only): equal views
// mean that nothing changed. Counters, handshake times and IPv6
// link-local addresses, which change by themselves, are left out.
func (g *genLab) view(t *testing.T, ctx context.Context, m *sim.Machine) string {
	t.Helper()
	var b strings.Builder
	run := func(filter func(string) (string, bool), name string, args ...string) {
		out, err := m.Run(ctx, name, args...)
		if err != nil {
			t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
		}
		fmt.Fprintf(&b, "$ %s %s\n", filepath.Base(name), strings.Join(args, " "))
		for line := range strings.Lines(string(out)) {
			if filter != nil {
				var ok bool
				if line, ok = filter(line); !ok {
					continue
				}
			}
			b.WriteString(line)
		}
	}
	// The carrier and the operational state follow by themselves, up to a
	// second late (the kernel's link watch): left out.
	run(func(l string) (string, bool) { return carrier.ReplaceAllString(l, ""), true }, ipBin, "-o", "link", "show")
	run(nil, ipBin, "-o", "-4", "addr", "show")
	run(nil, ipBin, "route", "show")
	// Permanent entries only: the VXLAN flood entries the helper makes,
	// and the bridges' own; learned ones come and go.
	run(func(l string) (string, bool) { return l, strings.Contains(l, "permanent") }, bridgeBin, "fdb", "show")
	if g.hasWireGuard(ctx, m) {
		for _, what := range []string{"public-key", "listen-port", "peers", "allowed-ips", "endpoints", "persistent-keepalive"} {
			run(nil, wgBin, "show", plumbing.WireGuardName, what)
		}
		run(nil, "/bin/cat", "/proc/sys/net/ipv4/conf/"+plumbing.WireGuardName+"/forwarding")
	}
	for _, f := range []string{"spec.json", "wireguard.key"} {
		data, err := os.ReadFile(g.machinePath(m, filepath.Join(helperapi.DefaultStateDir, f)))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(&b, "%s: none\n", f)
		case err != nil:
			t.Fatal(err)
		case f == "wireguard.key":
			sum := sha256.Sum256(data)
			fmt.Fprintf(&b, "%s: sha256 %s\n", f, hex.EncodeToString(sum[:]))
		default:
			fmt.Fprintf(&b, "%s:\n%s", f, data)
		}
	}
	return b.String()
}

// carrier matches what `ip -o link show` says of a link's carrier and
// operational state.
var carrier = regexp.MustCompile(`(LOWER_UP|NO-CARRIER|M-DOWN),|,?(LOWER_UP|NO-CARRIER|M-DOWN)| state \S+`)

func (g *genLab) hasWireGuard(ctx context.Context, m *sim.Machine) bool {
	return g.hasLink(ctx, m, plumbing.WireGuardName)
}

// wantCode checks that err is a helper error with code, saying says.
func wantCode(t *testing.T, what string, err error, code int64, says string) {
	t.Helper()
	var re *helperapi.RemoteError
	if !errors.As(err, &re) || re.Code != code || !strings.Contains(re.Message, says) {
		t.Errorf("%s: %v (%T), want helper error code %d saying %q", what, err, err, code, says)
	}
}

// Refused changes, stale or bad, change nothing on the machine: not its
// links, not its WireGuard peers, not its files; Prepare answers as Apply
// would. A good change of the next generation, the positive control,
// passes Prepare without changing anything, then applies and changes
// what the view shows.
func TestRefusedChangesChangeNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	g := newGenLab(t, ctx, "gn", 2, genNetwork)
	m1 := g.lab.Machines[0]
	c := g.client(t, ctx, m1)
	g.applyAll(t, ctx, g.specs(t, 2, genNetwork))
	if f, err := c.Facts(ctx); err != nil || f.Generation != 2 {
		t.Fatalf("facts after generation 2: generation %d, %v", f.Generation, err)
	}
	before := g.view(t, ctx, m1)

	gen3 := g.specs(t, 3, genNetwork, extraNetwork)
	own := gen3[m1.Name]
	own.Peers = append([]helperapi.Peer(nil), own.Peers...)
	own.Peers[0].PublicKey = g.keys[m1.Name]
	badMTU := gen3[m1.Name]
	badMTU.Mesh.MTU = 100
	for _, tc := range []struct {
		name string
		spec helperapi.Spec
		code int64
		says string
	}{
		{"an older generation", g.specs(t, 1, genNetwork, extraNetwork)[m1.Name], helperapi.CodeStale, "newer than this change's 1"},
		{"another change as the same generation", g.specs(t, 2, genNetwork, extraNetwork)[m1.Name], helperapi.CodeStale, "change as generation 2"},
		{"this machine as its own peer", own, helperapi.CodeInvalid, "this machine's own public key"},
		{"a spec that does not validate", badMTU, helperapi.CodeInvalid, "mesh MTU 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, "prepare", c.Prepare(ctx, tc.spec), tc.code, tc.says)
			_, err := c.Apply(ctx, tc.spec)
			wantCode(t, "apply", err, tc.code, tc.says)
			if d := cmp.Diff(before, g.view(t, ctx, m1)); d != "" {
				t.Errorf("a refused change changed the machine (-before +after):\n%s", d)
			}
		})
	}

	if err := c.Prepare(ctx, gen3[m1.Name]); err != nil {
		t.Fatalf("prepare generation 3: %v", err)
	}
	if d := cmp.Diff(before, g.view(t, ctx, m1)); d != "" {
		t.Errorf("prepare changed the machine (-before +after):\n%s", d)
	}
	rep, err := c.Apply(ctx, gen3[m1.Name])
	if err != nil || len(rep.Changes) == 0 {
		t.Fatalf("apply generation 3: changes %q, %v", rep.Changes, err)
	}
	if before == g.view(t, ctx, m1) {
		t.Error("generation 3 applied, but the view shows no change: it could not have told a change from none")
	}
	if f, err := c.Facts(ctx); err != nil || f.Generation != 3 {
		t.Errorf("facts after generation 3: generation %d, %v", f.Generation, err)
	}
	out, err := g.butter.Helper(ctx, m1, nil, "desired")
	if err != nil {
		t.Fatal(err)
	}
	var d helperapi.Desired
	if err := json.Unmarshal(out, &d); err != nil || d.Digest() != gen3[m1.Name].Desired.Digest() {
		t.Errorf("butter helper desired: %s (%v), want generation 3's desired state", out, err)
	}
}

// An apply that fails part-way puts the machine back on its previous
// spec. The failure is a real one: the new spec moves WireGuard to a UDP
// port another program holds, which the helper finds out only after it
// has built the new network's links. With a previous spec the machine
// ends as it was; with none (after remove) it ends with no links at all.
// Once the port is free, the same change applies: the port was the only
// reason.
func TestFailedApplyRollsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	g := newGenLab(t, ctx, "rb", 2, genNetwork)
	m1, m2 := g.lab.Machines[0], g.lab.Machines[1]
	c1, c2 := g.client(t, ctx, m1), g.client(t, ctx, m2)
	g.applyAll(t, ctx, g.specs(t, 2, genNetwork))
	gen3 := g.specs(t, 3, genNetwork, extraNetwork)
	gen5 := g.specs(t, 5, genNetwork, extraNetwork)

	t.Run("back on the previous spec", func(t *testing.T) {
		before := g.view(t, ctx, m1)
		const port = 51999
		hog, err := testbed.ListenUDPInNetns(filepath.Join(sim.NetnsDir, m1.Netns()), fmt.Sprintf(":%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer hog.Close()
		s3 := gen3[m1.Name]
		s3.Mesh.ListenPort = port
		_, err = c1.Apply(ctx, s3)
		wantCode(t, "apply with a taken port", err, helperapi.CodeApplyFailed, "address already in use")
		wantCode(t, "apply with a taken port", err, helperapi.CodeApplyFailed, "back on its previous configuration (generation 2)")
		t.Logf("m1 answered: %v", err)
		if d := cmp.Diff(before, g.view(t, ctx, m1)); d != "" {
			t.Errorf("after the failed apply the machine is not as it was (-before +after):\n%s", d)
		}
		if f, err := c1.Facts(ctx); err != nil || f.Generation != 2 {
			t.Errorf("facts after the failed apply: generation %d, %v; want 2", f.Generation, err)
		}
		if err := waitMeshPing(ctx, m1, g.helpers.Specs[m2.Name], 10*time.Second); err != nil {
			t.Errorf("the mesh does not work after the rollback: %v", err)
		}

		hog.Close()
		if _, err := c1.Apply(ctx, s3); err != nil {
			t.Fatalf("the same change once the port is free: %v", err)
		}
		out, err := m1.Run(ctx, wgBin, "show", plumbing.WireGuardName, "listen-port")
		if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(port) {
			t.Errorf("listen port %q (%v), want %d", out, err, port)
		}
		if _, err := m1.Run(ctx, ipBin, "link", "show", plumbing.BridgeName(extraNetwork.ID)); err != nil {
			t.Errorf("the new network's bridge is missing: %v", err)
		}
		// Every machine back on the default port, for what follows.
		g.applyAll(t, ctx, g.specs(t, 4, genNetwork, extraNetwork))
	})

	t.Run("no previous spec: no links", func(t *testing.T) {
		if err := c2.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		before := g.view(t, ctx, m2)
		if strings.Contains(before, ": "+plumbing.Prefix) {
			t.Fatalf("links of the helper's left after remove:\n%s", before)
		}
		hog, err := testbed.ListenUDPInNetns(filepath.Join(sim.NetnsDir, m2.Netns()), fmt.Sprintf(":%d", helperapi.DefaultListenPort))
		if err != nil {
			t.Fatal(err)
		}
		defer hog.Close()
		_, err = c2.Apply(ctx, gen5[m2.Name])
		wantCode(t, "first apply with a taken port", err, helperapi.CodeApplyFailed, "address already in use")
		wantCode(t, "first apply with a taken port", err, helperapi.CodeApplyFailed, "back on its previous configuration (none")
		t.Logf("m2 answered: %v", err)
		if d := cmp.Diff(before, g.view(t, ctx, m2)); d != "" {
			t.Errorf("after the failed first apply the machine is not as it was (-before +after):\n%s", d)
		}
		hog.Close()
		if _, err := c2.Apply(ctx, gen5[m2.Name]); err != nil {
			t.Fatalf("the same change once the port is free: %v", err)
		}
		// m2 starts afresh, so m2 makes the first handshake.
		if err := waitMeshPing(ctx, m2, gen5[m1.Name], 10*time.Second); err != nil {
			t.Errorf("m2 does not reach m1 over the mesh after its apply: %v", err)
		}
	})

	// Apply persists a spec only once it applied, so a daemon that dies
	// during a machine's first apply comes back with no spec and must not
	// keep the links it had made: the restarted daemon removes them.
	t.Run("a first apply cut short leaves no links after a restart", func(t *testing.T) {
		if err := c2.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		left := plumbing.BridgeName(9)
		if _, err := m2.Run(ctx, ipBin, "link", "add", left, "type", "bridge"); err != nil {
			t.Fatal(err)
		}
		p, err := g.helpers.Daemons[m2.Name].Restart(ctx)
		if err != nil {
			t.Fatal(err)
		}
		g.helpers.Daemons[m2.Name] = p
		if err := g.butter.WaitHelper(ctx, m2, p); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for g.hasLink(ctx, m2, left) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if g.hasLink(ctx, m2, left) {
			t.Errorf("%s, left by a first apply that never finished, is still there 5 s after the daemon restarted", left)
		}
		c := g.client(t, ctx, m2)
		if f, err := c.Facts(ctx); err != nil || f.Generation != 0 {
			t.Errorf("facts after the restart: generation %d, %v; want 0 (no spec)", f.Generation, err)
		}
		if d, err := c.Desired(ctx); err != nil || d.Generation != 0 || len(d.Machines) != 0 {
			t.Errorf("desired state with no spec: %+v, %v; want none", d, err)
		}
	})
}

func (g *genLab) hasLink(ctx context.Context, m *sim.Machine, name string) bool {
	_, err := m.Run(ctx, ipBin, "link", "show", name)
	return err == nil
}

// waitMeshPing pings to's mesh address from m until a reply comes or
// within passes.
func waitMeshPing(ctx context.Context, m *sim.Machine, to helperapi.Spec, within time.Duration) error {
	return retryWithin(ctx, within, func(ctx context.Context) error {
		_, err := m.Run(ctx, pingBin, "-n", "-c", "1", "-W", "1", to.Mesh.Address.Addr().String())
		return err
	})
}
