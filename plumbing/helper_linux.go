package plumbing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/images"
	"github.com/butter-cloud/butter/plumbing/resolver"
	"github.com/butter-cloud/butter/plumbing/vm"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Helper builds and keeps this machine's part of the private networks. Its
// methods may be called from many goroutines; they run one at a time.
type Helper struct {
	mu    sync.Mutex
	state state
	log   *slog.Logger
	links *kernelTable
	wg    *wgctrl.Client
	// probes are the daemon's last echoes to the peers (probeLoop).
	probes probes
	names  *resolver.Servers // each network's resolver, on its gateway

	vmMu        sync.Mutex // guards vms and images
	vmOpts      vm.Options
	imageMirror string
	vms         *vm.Manager
	images      *images.Store
}

// New returns a Helper for the current network namespace.
func New(opts Options) (*Helper, error) {
	if opts.StateDir == "" {
		opts.StateDir = helperapi.DefaultStateDir
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := ensureStateDir(opts.StateDir); err != nil {
		return nil, err
	}
	links, err := newKernelTable(opts.Log)
	if err != nil {
		return nil, err
	}
	wg, err := wgctrl.New()
	if err != nil {
		links.close()
		return nil, fmt.Errorf("open wireguard control: %w", err)
	}
	return &Helper{state: state{opts.StateDir}, log: opts.Log, links: links, wg: wg,
		names:  resolver.NewServers(resolver.Options{Log: opts.Log}),
		vmOpts: opts.VM, imageMirror: opts.ImageMirror}, nil
}

// Close releases the helper. A userspace WireGuard device and the
// networks' resolvers stop with it; kernel links stay.
func (h *Helper) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.names.Close(); err != nil {
		h.log.Error("stop the networks' resolvers", "err", err)
	}
	h.vmMu.Lock()
	if h.vms != nil {
		h.vms.Close()
	}
	h.vmMu.Unlock()
	h.links.close()
	return h.wg.Close()
}

// PublicKey returns this machine's WireGuard public key, making the private
// key on first use.
func (h *Helper) PublicKey() (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	k, err := h.state.privateKey()
	if err != nil {
		return "", err
	}
	return k.PublicKey().String(), nil
}

func (h *Helper) machine(spec helperapi.Spec) machine {
	uplink, mtu := h.links.uplink(endpointAddrs(spec))
	return machine{Uplink: uplink, UplinkMTU: mtu, Gretap: h.links.capabilities().Gretap}
}

func (h *Helper) apply(ctx context.Context, spec helperapi.Spec) (helperapi.Report, error) {
	priv, err := h.state.privateKey()
	if err != nil {
		return helperapi.Report{}, err
	}
	if err := notSelf(spec, priv.PublicKey().String()); err != nil {
		return helperapi.Report{}, err
	}
	p := makePlan(spec, h.machine(spec))
	// The firewall before the links: its rules name links that need not
	// exist yet, so no tunnel is ever up without it.
	fw, err := h.applyFirewall(ctx, spec, p)
	if err != nil {
		return helperapi.Report{}, err
	}
	guard, err := h.applyGuard(ctx, spec)
	if err != nil {
		return helperapi.Report{}, err
	}
	fw = append(fw, guard...)
	gw, err := h.applyGatewayFilter(ctx, p)
	if err != nil {
		return helperapi.Report{}, err
	}
	fw = append(fw, gw...)
	changes, err := converge(ctx, h.links, p.Links)
	rep := h.report(spec, p, priv)
	rep.Changes = append(rep.Changes, fw...)
	for _, c := range changes {
		rep.Changes = append(rep.Changes, c.String())
	}
	if err != nil {
		return rep, fmt.Errorf("apply links: %w", err)
	}
	// The resolvers after the links: their gateways are on the bridges.
	names, err := h.names.Converge(ctx, resolver.Zones(spec))
	rep.Changes = append(rep.Changes, names...)
	if err != nil {
		return rep, fmt.Errorf("serve names: %w", err)
	}
	if changed, err := setForwarding(spec.Mesh.Relay); err != nil {
		return rep, err
	} else if changed {
		rep.Changes = append(rep.Changes, fmt.Sprintf("set %s forwarding %s", WireGuardName, onOff(spec.Mesh.Relay)))
	}
	v6, err := setIPv6Off(ipv6Off(p))
	rep.Changes = append(rep.Changes, v6...)
	if err != nil {
		return rep, err
	}
	v6, err = portsIPv6Off()
	rep.Changes = append(rep.Changes, v6...)
	if err != nil {
		return rep, err
	}
	fwd, err := setEgressForwarding(egressForwarding(spec, p))
	rep.Changes = append(rep.Changes, fwd...)
	if err != nil {
		return rep, err
	}
	dev, err := h.wg.Device(WireGuardName)
	if err != nil {
		return rep, fmt.Errorf("read wireguard %q: %w", WireGuardName, err)
	}
	cfg, notes, err := peerChanges(ctx, spec, priv, dev)
	if err != nil {
		return rep, err
	}
	if len(notes) > 0 {
		if err := h.wg.ConfigureDevice(WireGuardName, cfg); err != nil {
			return rep, fmt.Errorf("configure wireguard %q (%s): %w", WireGuardName, strings.Join(notes, "; "), explainErrno(err))
		}
		rep.Changes = append(rep.Changes, notes...)
	}
	for _, c := range rep.Changes {
		h.log.Info("applied", "change", c)
	}
	return rep, nil
}

func (h *Helper) report(spec helperapi.Spec, p plan, priv wgtypes.Key) helperapi.Report {
	return helperapi.Report{
		WireGuard: h.links.wireGuardReport(WireGuardName, p.WireGuardMTU, priv.PublicKey().String(), spec.Mesh.Port()),
		Networks:  p.Networks,
		Changes:   []string{},
	}
}

// Check returns how the machine differs from spec, changing nothing.
func (h *Helper) Check(ctx context.Context, spec helperapi.Spec) ([]helperapi.Drift, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := makePlan(spec, h.machine(spec))
	have, err := h.links.Links(ctx)
	if err != nil {
		return nil, err
	}
	drift := []helperapi.Drift{}
	for _, c := range diff(p.Links, have) {
		d := helperapi.Drift{Link: c.Link.Name}
		switch c.Op {
		case OpAdd:
			d.Problem = "missing"
		case OpDelete:
			d.Problem = "not in the spec"
		case OpReplace:
			d.Problem = "wrong kind or tunnel ends; want " + c.Link.identity()
		case OpSet:
			d.Problem = "want " + c.What
		}
		drift = append(drift, d)
	}
	if on, err := forwarding(); err == nil && on != spec.Mesh.Relay {
		drift = append(drift, helperapi.Drift{Link: WireGuardName, Problem: "want forwarding " + onOff(spec.Mesh.Relay)})
	}
	fw, err := h.firewallDrift(ctx, spec, p)
	if err != nil {
		return nil, err
	}
	drift = append(drift, fw...)
	guard, err := h.guardDrift(ctx, spec)
	if err != nil {
		return nil, err
	}
	drift = append(drift, guard...)
	gw, err := h.gatewayFilterDrift(ctx, p)
	if err != nil {
		return nil, err
	}
	drift = append(drift, gw...)
	fwd, err := forwardingDrift(egressForwarding(spec, p))
	if err != nil {
		return nil, err
	}
	for _, d := range fwd {
		drift = append(drift, helperapi.Drift{Link: d[0], Problem: fmt.Sprintf("forwarding is %s, want %s", d[1], onOff(!(d[1] == "1")))})
	}
	drift = append(drift, h.namesDrift(spec)...)
	priv, err := h.state.privateKey()
	if err != nil {
		return nil, err
	}
	if dev, err := h.wg.Device(WireGuardName); err == nil {
		_, notes, err := peerChanges(ctx, spec, priv, dev)
		if err != nil {
			return nil, err
		}
		for _, n := range notes {
			drift = append(drift, helperapi.Drift{Link: WireGuardName, Problem: n})
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		drift = append(drift, helperapi.Drift{Link: WireGuardName, Problem: "cannot read the device: " + err.Error()})
	}
	return drift, nil
}

// namesDrift names the bridges of the networks whose resolver is not
// running.
func (h *Helper) namesDrift(spec helperapi.Spec) []helperapi.Drift {
	var drift []helperapi.Drift
	missing := h.names.Missing(resolver.Zones(spec))
	for _, n := range spec.Networks {
		if slices.Contains(missing, n.Name) {
			drift = append(drift, helperapi.Drift{Link: BridgeName(n.ID), Problem: fmt.Sprintf(
				"no resolver for network %s on %s port %d", n.Name, helperapi.GatewayAddr(n.Subnet), resolver.Port)})
		}
	}
	return drift
}

// Remove tears down every link the helper made and forgets the applied
// spec. What is already gone is not an error. The key stays: it is the
// machine's identity.
func (h *Helper) Remove(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.teardown(ctx); err != nil {
		return err
	}
	return h.state.forgetSpec()
}

// teardown removes every link the helper made, its firewall, and stops
// the networks' resolvers.
func (h *Helper) teardown(ctx context.Context) error {
	names, err := h.names.Converge(ctx, nil)
	for _, c := range names {
		h.log.Info("removed", "change", c)
	}
	if err != nil {
		return err
	}
	changes, err := converge(ctx, h.links, nil)
	for _, c := range changes {
		h.log.Info("removed", "change", c.String())
	}
	if err != nil {
		return fmt.Errorf("remove links: %w", err)
	}
	return errors.Join(h.removeFirewall(ctx), h.removeGatewayFilter(ctx), h.removeGuard(ctx))
}

// Restore re-applies the persisted spec, if there is one. With none, it
// removes the links a daemon that died during the machine's first Apply
// may have left (Apply persists a spec only once it applied).
func (h *Helper) Restore(ctx context.Context) (helperapi.Report, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	spec, ok, err := h.state.spec()
	if err != nil {
		return helperapi.Report{}, false, err
	}
	if !ok {
		return helperapi.Report{}, false, h.teardown(ctx)
	}
	rep, err := h.apply(ctx, spec)
	return rep, true, err
}

// Facts reports what the kernel can do and how the mesh is doing.
func (h *Helper) Facts(ctx context.Context) (helperapi.Facts, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	spec, _, err := h.state.spec()
	if err != nil {
		return helperapi.Facts{}, err
	}
	caps := h.links.capabilities()
	f := helperapi.Facts{KernelWireGuard: caps.KernelWireGuard, Gretap: caps.Gretap, Peers: []helperapi.PeerFacts{},
		Networks: []helperapi.NetworkReport{}}
	f.Version, _ = SelfVersion()
	f.Generation = spec.Generation
	f.Uplink, f.UplinkMTU = h.links.uplink(endpointAddrs(spec))
	f.Addresses = h.links.addresses()
	f.Load = readLoad()
	f.Accel = vm.Accelerator(h.vmOpts)
	if spec.Mesh.Address.IsValid() {
		f.Networks = makePlan(spec, machine{UplinkMTU: f.UplinkMTU, Gretap: caps.Gretap}).Networks
	}
	dev, err := h.wg.Device(WireGuardName)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("read wireguard %q: %w", WireGuardName, err)
	}
	mtu, _ := h.links.linkMTU(WireGuardName)
	wg := h.links.wireGuardReport(dev.Name, mtu, dev.PublicKey.String(), dev.ListenPort)
	f.WireGuard = &wg
	names := map[string]string{}
	for _, p := range spec.Peers {
		if p.Via == "" {
			names[p.PublicKey] = p.Name
		}
	}
	now := time.Now()
	for _, p := range dev.Peers {
		pf := helperapi.PeerFacts{Name: names[p.PublicKey.String()], PublicKey: p.PublicKey.String(),
			RxBytes: p.ReceiveBytes, TxBytes: p.TransmitBytes, HandshakeAge: -1}
		if p.Endpoint != nil {
			pf.Endpoint = p.Endpoint.String()
		}
		if !p.LastHandshakeTime.IsZero() {
			pf.LastHandshake = p.LastHandshakeTime
			pf.HandshakeAge = now.Sub(p.LastHandshakeTime).Seconds()
		}
		if r, ok := h.probes.get(pf.Name); ok {
			pf.Probe = &r
		}
		f.Peers = append(f.Peers, pf)
	}
	return f, nil
}
