package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

// DefaultMesh is the mesh prefix Specs uses when Mesh.Prefix is unset.
var DefaultMesh = netip.MustParsePrefix("10.99.0.0/16")

// Mesh plans a full WireGuard mesh over a lab's machines.
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
func (mesh Mesh) Addr(m *Machine) netip.Prefix { return hostAddr(mesh.prefix(), m.Index) }

// Specs returns every machine's spec, by machine name, given every
// machine's WireGuard public key by machine name: helperapi.Plan over the
// lab's machines, each reached at its underlay address; the machines
// behind NAT reach each other through the first machine on the underlay.
func (l *Lab) Specs(mesh Mesh, keys map[string]string) (map[string]helperapi.Spec, error) {
	plan := helperapi.MeshPlan{Prefix: mesh.prefix(), Port: mesh.Port, Keepalive: mesh.Keepalive}
	port := mesh.Port
	if port == 0 {
		port = helperapi.DefaultListenPort
	}
	var all []string
	for _, m := range l.Machines {
		plan.Members = append(plan.Members, helperapi.Member{
			Name:      m.Name,
			PublicKey: keys[m.Name],
			MeshIP:    mesh.Addr(m).Addr(),
			Endpoint:  netip.AddrPortFrom(m.Addr.Addr(), uint16(port)).String(),
			NAT:       m.Router != nil,
		})
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

// Helper runs `butter helper ARGS` on the machine, with stdin as standard
// input (may be nil), and returns its standard output. butter is the path
// of the butter binary as the machine sees it (the host's files, less the
// machine's own folders).
func (m *Machine) Helper(ctx context.Context, butter string, stdin []byte, args ...string) ([]byte, error) {
	cmd := m.Command(ctx, butter, append([]string{"helper"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := output(cmd)
	if err != nil {
		return out, fmt.Errorf("on %s: %w", m.Name, err)
	}
	return out, nil
}

// StartHelper starts `butter helper daemon` on the machine with its
// default state folder and socket (the machine's own) and waits until it
// answers. out receives its log.
func (m *Machine) StartHelper(ctx context.Context, butter string, out io.Writer) (*Process, error) {
	p, err := m.Start(ctx, out, butter, append([]string{"helper", "daemon"}, m.lab.helperArgs...)...)
	if err != nil {
		return nil, err
	}
	if err := m.WaitHelper(ctx, butter, p); err != nil {
		_ = p.Kill()
		return nil, err
	}
	return p, nil
}

// WaitHelper waits until the helper daemon on the machine answers facts,
// or p (if not nil) exits, or ctx ends.
func (m *Machine) WaitHelper(ctx context.Context, butter string, p *Process) error {
	var last error
	for {
		if _, err := m.Facts(ctx, butter); err == nil {
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

// PublicKey returns the machine's WireGuard public key.
func (m *Machine) PublicKey(ctx context.Context, butter string) (string, error) {
	out, err := m.Helper(ctx, butter, nil, "pubkey")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// Apply sends spec to the machine's helper daemon and returns its report.
func (m *Machine) Apply(ctx context.Context, butter string, spec helperapi.Spec) (helperapi.Report, error) {
	var rep helperapi.Report
	err := m.helperJSON(ctx, butter, spec, &rep, "apply", "-")
	return rep, err
}

// Check returns how the machine differs from spec.
func (m *Machine) Check(ctx context.Context, butter string, spec helperapi.Spec) ([]helperapi.Drift, error) {
	var res helperapi.CheckResult
	err := m.helperJSON(ctx, butter, spec, &res, "check", "-")
	return res.Drift, err
}

// Facts returns the machine's helper facts.
func (m *Machine) Facts(ctx context.Context, butter string) (helperapi.Facts, error) {
	var f helperapi.Facts
	err := m.helperJSON(ctx, butter, nil, &f, "facts")
	return f, err
}

func (m *Machine) helperJSON(ctx context.Context, butter string, in, out any, args ...string) error {
	var stdin []byte
	if in != nil {
		var err error
		if stdin, err = json.Marshal(in); err != nil {
			return fmt.Errorf("helper %s on %s: %w", args[0], m.Name, err)
		}
	}
	data, err := m.Helper(ctx, butter, stdin, args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("helper %s on %s: decode %q: %w", args[0], m.Name, data, err)
	}
	return nil
}

// Helpers is the butter helper running on every machine of a lab.
type Helpers struct {
	// Butter is the butter binary the machines run.
	Butter string
	// Specs and Reports are each machine's spec and its first report, by
	// machine name.
	Specs   map[string]helperapi.Spec
	Reports map[string]helperapi.Report
	// Daemons are the helper daemons, by machine name.
	Daemons map[string]*Process
}

// StartMesh starts the helper daemon on every machine (logging to
// logs(m), which may be nil), collects the public keys, applies each
// machine's spec for mesh, and waits until the mesh is up (WaitMesh).
func (l *Lab) StartMesh(ctx context.Context, butter string, mesh Mesh, logs func(*Machine) io.Writer) (*Helpers, error) {
	h := &Helpers{
		Butter:  butter,
		Reports: map[string]helperapi.Report{},
		Daemons: map[string]*Process{},
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
			p, err := m.StartHelper(ctx, butter, out)
			if err != nil {
				errs[i] = err
				return
			}
			key, err := m.PublicKey(ctx, butter)
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
	specs, err := l.Specs(mesh, keys)
	if err != nil {
		return h, err
	}
	h.Specs = specs
	// Every machine knows every peer before the first packet, so that no
	// handshake waits out WireGuard's 5 s retry.
	for i, m := range l.Machines {
		wg.Go(func() {
			rep, err := m.Apply(ctx, butter, specs[m.Name])
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
	return h, l.WaitMesh(ctx, butter, mesh)
}

// WaitMesh waits until every machine reaches every other machine's mesh
// address (ping drives the WireGuard handshakes) and the helper's facts
// show a handshake with every peer.
func (l *Lab) WaitMesh(ctx context.Context, butter string, mesh Mesh) error {
	ping, err := lookPath("ping")
	if err != nil {
		return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, a := range l.Machines {
		for _, b := range l.Machines {
			if a == b {
				continue
			}
			wg.Go(func() {
				to := mesh.Addr(b).Addr().String()
				for {
					_, err := a.Run(ctx, ping, "-n", "-q", "-c", "1", "-W", "1", to)
					if err == nil {
						return
					}
					select {
					case <-ctx.Done():
						mu.Lock()
						errs = append(errs, fmt.Errorf("%s cannot reach %s over the mesh: %v", a.Name, b.Name, err))
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
		f, err := m.Facts(ctx, butter)
		if err != nil {
			return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
		}
		for _, p := range f.Peers {
			if p.HandshakeAge < 0 {
				errs = append(errs, fmt.Errorf("%s has no handshake with %s", m.Name, p.Name))
			}
		}
		if len(f.Peers) != len(l.Machines)-1 {
			errs = append(errs, fmt.Errorf("%s has %d peers, want %d", m.Name, len(f.Peers), len(l.Machines)-1))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab %q: wait for the mesh: %w", l.Name, err)
	}
	return nil
}
