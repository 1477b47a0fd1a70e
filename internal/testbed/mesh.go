package testbed

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
)

// DefaultMesh is the mesh prefix when Mesh.Prefix is unset.
var DefaultMesh = netip.MustParsePrefix("10.99.0.0/16")

// Mesh is a full WireGuard mesh over a lab's machines, as a test wants it.
type Mesh struct {
	// Prefix is the mesh; machine i gets host number i. Default
	// DefaultMesh.
	Prefix netip.Prefix
	// Port is WireGuard's listen port on every machine (51820 if zero).
	Port int
	// Keepalive is every peer's persistent keepalive in seconds (0: off;
	// a machine behind NAT keeps helperapi.NATKeepalive).
	Keepalive int
	// Networks are the private networks. A network with no Peers spans
	// every machine; otherwise Peers names the machines it spans.
	Networks []helperapi.Network
}

func (mesh Mesh) prefix() netip.Prefix {
	if mesh.Prefix.IsValid() {
		return mesh.Prefix
	}
	return DefaultMesh
}

// Addr is machine m's mesh address, with the mesh's prefix length.
func (mesh Mesh) Addr(m *sim.Machine) netip.Prefix { return sim.HostAddr(mesh.prefix(), m.Index) }

// Specs returns every machine's spec, by machine name, given every
// machine's WireGuard public key by machine name: helperapi.Plan over the
// lab's machines, each reached at its underlay address; the machines
// behind NAT (behind either router) have no endpoint and reach each other
// through the first machine on the underlay.
func Specs(l *sim.Lab, mesh Mesh, keys map[string]string) (map[string]helperapi.Spec, error) {
	plan := helperapi.MeshPlan{Prefix: mesh.prefix(), Port: mesh.Port, Keepalive: mesh.Keepalive}
	port := mesh.Port
	if port == 0 {
		port = helperapi.DefaultListenPort
	}
	var all []string
	for _, m := range l.Machines {
		member := helperapi.Member{
			Name:      m.Name,
			PublicKey: keys[m.Name],
			MeshIP:    mesh.Addr(m).Addr(),
			NAT:       m.Router != nil,
		}
		if !member.NAT { // nobody reaches a machine behind NAT first
			member.Endpoint = netip.AddrPortFrom(m.Addr.Addr(), uint16(port)).String()
		}
		plan.Members = append(plan.Members, member)
		all = append(all, m.Name)
	}
	for _, n := range mesh.Networks {
		machines := n.Peers
		if len(machines) == 0 {
			machines = all
		}
		plan.Networks = append(plan.Networks, helperapi.PlanNetwork{Network: n, Machines: machines})
	}
	specs, err := helperapi.Plan(plan)
	if err != nil {
		return nil, fmt.Errorf("lab %q mesh: %w", l.Name, err)
	}
	return specs, nil
}

// Butter is the butter binary a lab's machines run as their helper.
type Butter struct {
	// Path is the binary as the machines see it (the host's files, less
	// the machines' own folders).
	Path string
	// DaemonArgs are added to every `butter helper daemon` StartHelper
	// starts, e.g. --accel tcg where /dev/kvm hangs guests.
	DaemonArgs []string
}

// Helper runs `butter helper ARGS` on machine m, with stdin as standard
// input (may be nil), and returns its standard output.
func (b Butter) Helper(ctx context.Context, m *sim.Machine, stdin []byte, args ...string) ([]byte, error) {
	cmd := m.Command(ctx, b.Path, append([]string{"helper"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := sim.Output(cmd)
	if err != nil {
		return out, fmt.Errorf("on %s: %w", m.Name, err)
	}
	return out, nil
}

// StartHelper starts `butter helper daemon` on m with its default state
// folder and socket (the machine's own) and waits until it answers. out
// receives its log.
func (b Butter) StartHelper(ctx context.Context, m *sim.Machine, out io.Writer) (*sim.Process, error) {
	p, err := m.Start(ctx, out, b.Path, append([]string{"helper", "daemon"}, b.DaemonArgs...)...)
	if err != nil {
		return nil, err
	}
	if err := b.WaitHelper(ctx, m, p); err != nil {
		_ = p.Kill()
		return nil, err
	}
	return p, nil
}

// helperWait and meshWait bound WaitHelper and WaitMesh whatever the
// caller's context allows: a daemon answers in well under a second, a
// mesh of a few machines handshakes in a few.
const (
	helperWait = 60 * time.Second
	meshWait   = 90 * time.Second
)

// WaitHelper waits until the helper daemon on m answers facts, or p (if
// not nil) exits, or ctx ends, or helperWait passes.
func (b Butter) WaitHelper(ctx context.Context, m *sim.Machine, p *sim.Process) error {
	ctx, cancel := context.WithTimeout(ctx, helperWait)
	defer cancel()
	var last error
	for {
		if _, err := b.Facts(ctx, m); err == nil {
			return nil
		} else {
			last = err
		}
		var done <-chan struct{}
		if p != nil {
			done = p.Done()
		}
		select {
		case <-done:
			return fmt.Errorf("helper daemon on %s exited: %v", m.Name, p.Err())
		case <-ctx.Done():
			return fmt.Errorf("helper daemon on %s does not answer: %w (last: %v)", m.Name, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PublicKey returns m's WireGuard public key.
func (b Butter) PublicKey(ctx context.Context, m *sim.Machine) (string, error) {
	out, err := b.Helper(ctx, m, nil, "pubkey")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Apply sends spec to m's helper daemon and returns its report.
func (b Butter) Apply(ctx context.Context, m *sim.Machine, spec helperapi.Spec) (helperapi.Report, error) {
	var rep helperapi.Report
	err := b.helperJSON(ctx, m, spec, &rep, "apply", "-")
	return rep, err
}

// Check returns how m differs from spec.
func (b Butter) Check(ctx context.Context, m *sim.Machine, spec helperapi.Spec) ([]helperapi.Drift, error) {
	var res helperapi.CheckResult
	err := b.helperJSON(ctx, m, spec, &res, "check", "-")
	return res.Drift, err
}

// Facts returns m's helper facts.
func (b Butter) Facts(ctx context.Context, m *sim.Machine) (helperapi.Facts, error) {
	var f helperapi.Facts
	err := b.helperJSON(ctx, m, nil, &f, "facts")
	return f, err
}

func (b Butter) helperJSON(ctx context.Context, m *sim.Machine, in, out any, args ...string) error {
	var stdin []byte
	if in != nil {
		var err error
		if stdin, err = json.Marshal(in); err != nil {
			return fmt.Errorf("helper %s on %s: %w", args[0], m.Name, err)
		}
	}
	data, err := b.Helper(ctx, m, stdin, args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("helper %s on %s: decode %q: %w", args[0], m.Name, data, err)
	}
	return nil
}

// Helpers are the helper daemons running on every machine of a lab.
type Helpers struct {
	// Specs and Reports are each machine's spec and its first report, by
	// machine name.
	Specs   map[string]helperapi.Spec
	Reports map[string]helperapi.Report
	// Daemons are the helper daemons, by machine name.
	Daemons map[string]*sim.Process
}

// StartMesh starts the helper daemon on every machine of l (logging to
// logs(m), which may be nil), collects the public keys, applies each
// machine's spec for mesh, and waits until the mesh is up (WaitMesh).
func (b Butter) StartMesh(ctx context.Context, l *sim.Lab, mesh Mesh, logs func(*sim.Machine) io.Writer) (*Helpers, error) {
	h := &Helpers{
		Reports: map[string]helperapi.Report{},
		Daemons: map[string]*sim.Process{},
	}
	keys := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(l.Machines))
	for i, m := range l.Machines {
		wg.Go(func() {
			var out io.Writer
			if logs != nil {
				out = logs(m)
			}
			p, err := b.StartHelper(ctx, m, out)
			if err != nil {
				errs[i] = err
				return
			}
			key, err := b.PublicKey(ctx, m)
			mu.Lock()
			defer mu.Unlock()
			h.Daemons[m.Name] = p
			keys[m.Name] = key
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return h, err
	}
	specs, err := Specs(l, mesh, keys)
	if err != nil {
		return h, err
	}
	h.Specs = specs
	// Every machine knows every peer before the first packet, so that no
	// handshake waits out WireGuard's 5 s retry.
	for i, m := range l.Machines {
		wg.Go(func() {
			rep, err := b.Apply(ctx, m, specs[m.Name])
			mu.Lock()
			defer mu.Unlock()
			h.Reports[m.Name] = rep
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return h, err
	}
	return h, b.WaitMesh(ctx, l, specs)
}

// WaitMesh waits until every machine of l reaches every other machine's
// mesh address (ping drives the WireGuard handshakes) and the helper's
// facts show a handshake with every peer it reaches directly. specs are
// the machines' specs, by machine name. It gives up after meshWait at
// most, naming the pairs that do not reach each other.
func (b Butter) WaitMesh(ctx context.Context, l *sim.Lab, specs map[string]helperapi.Spec) error {
	ctx, cancel := context.WithTimeout(ctx, meshWait)
	defer cancel()
	ping, err := sim.LookPath("ping")
	if err != nil {
		return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, a := range l.Machines {
		for _, o := range l.Machines {
			if a == o {
				continue
			}
			wg.Go(func() {
				to := specs[o.Name].Mesh.Address.Addr().String()
				for {
					_, err := a.Run(ctx, ping, "-n", "-q", "-c", "1", "-W", "1", to)
					if err == nil {
						return
					}
					select {
					case <-ctx.Done():
						mu.Lock()
						errs = append(errs, fmt.Errorf("%s cannot reach %s over the mesh: %v", a.Name, o.Name, err))
						mu.Unlock()
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			})
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
	}
	for _, m := range l.Machines {
		f, err := b.Facts(ctx, m)
		if err != nil {
			return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
		}
		for _, p := range f.Peers {
			if p.HandshakeAge < 0 {
				errs = append(errs, fmt.Errorf("%s has no handshake with %s", m.Name, p.Name))
			}
		}
		direct := 0
		for _, p := range specs[m.Name].Peers {
			if p.Via == "" {
				direct++
			}
		}
		if len(f.Peers) != direct {
			errs = append(errs, fmt.Errorf("%s has %d WireGuard peers, want %d", m.Name, len(f.Peers), direct))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
	}
	return nil
}

// Key is a WireGuard public key for tests that need one of the right
// shape but no key pair: 32 bytes of b, in base64.
func Key(b byte) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(b), 32)))
}
