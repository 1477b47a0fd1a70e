package plumbing

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/resolver"
	"github.com/butter-cloud/butter/plumbing/vm"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// DryRun computes what req would do on this machine against its current
// state, in the order Apply (or Remove, or a VM action) does it, and
// changes nothing: no key is made, no link, table or setting touched.
// The steps come from the values the executor uses (see render.go).
func (h *Helper) DryRun(ctx context.Context, req helperapi.DryRunRequest) (helperapi.DryRun, error) {
	var steps []helperapi.DryRunStep
	var err error
	switch {
	case req.VM != nil:
		steps, err = h.vmDryRun(ctx, *req.VM)
	case req.CreateVM != nil:
		steps, err = h.createVMDryRun(ctx, *req.CreateVM)
	case req.Remove:
		h.mu.Lock()
		steps, err = h.teardownDryRun(ctx)
		h.mu.Unlock()
	case req.Spec != nil:
		h.mu.Lock()
		steps, err = h.applyDryRun(ctx, *req.Spec)
		h.mu.Unlock()
	case req.RotateKey:
		h.mu.Lock()
		steps, err = h.rotateKeyDryRun()
		h.mu.Unlock()
	default:
		return helperapi.DryRun{}, &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: "dry run: give a spec, remove, a vm action or rotate_key"}
	}
	if err != nil {
		return helperapi.DryRun{}, err
	}
	if steps == nil {
		steps = []helperapi.DryRunStep{}
	}
	return helperapi.DryRun{Steps: steps}, nil
}

// applyDryRun is apply's dry run; the caller holds h.mu.
func (h *Helper) applyDryRun(ctx context.Context, spec helperapi.Spec) ([]helperapi.DryRunStep, error) {
	if _, _, err := h.admit(spec); err != nil {
		return nil, err
	}
	var steps []helperapi.DryRunStep
	add := func(change string, cmds ...string) {
		steps = append(steps, helperapi.DryRunStep{Change: change, Commands: cmds})
	}
	priv, hasKey, err := h.state.key()
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(h.state.dir, keyFile)
	if hasKey {
		if err := notSelf(spec, priv.PublicKey().String()); err != nil {
			return nil, err
		}
	} else {
		add("make the machine's WireGuard key (" + keyPath + ", mode 0600; it never leaves the machine)")
	}
	p := makePlan(spec, h.machine(spec))
	if err := h.tablesDryRun(ctx, spec, p, add); err != nil {
		return nil, err
	}
	have, err := h.links.Links(ctx)
	if err != nil {
		return nil, err
	}
	haveBy := map[string]Link{}
	for _, l := range have {
		haveBy[l.Name] = l
	}
	for _, c := range diff(p.Links, have) {
		add(c.String(), changeCommands(c, haveBy[c.Link.Name])...)
	}
	for _, n := range h.names.Missing(resolver.Zones(spec)) {
		add(fmt.Sprintf("serve names for network %s on its gateway, port %d (inside the helper daemon)", n, resolver.Port))
	}
	if on, err := forwarding(); (err != nil && spec.Mesh.Relay) || (err == nil && on != spec.Mesh.Relay) {
		add(fmt.Sprintf("set %s forwarding %s", WireGuardName, onOff(spec.Mesh.Relay)),
			sysctlCommand("net.ipv4.conf."+WireGuardName+".forwarding", boolValue(spec.Mesh.Relay)))
	}
	if err := ipv6DryRun(ipv6Off(p), haveBy, add); err != nil {
		return nil, err
	}
	if err := egressDryRun(egressForwarding(spec, p), add); err != nil {
		return nil, err
	}
	dev, err := h.wg.Device(WireGuardName)
	switch {
	case errors.Is(err, os.ErrNotExist):
		dev = &wgtypes.Device{Name: WireGuardName}
	case err != nil:
		return nil, fmt.Errorf("read wireguard %q: %w", WireGuardName, err)
	}
	cfg, notes, err := peerChanges(ctx, spec, priv, dev)
	if err != nil {
		return nil, err
	}
	if !hasKey && cfg.PrivateKey == nil {
		// The key the helper makes first goes to the device too.
		cfg.PrivateKey = &priv
		notes = append([]string{"wireguard set private key (the new one)"}, notes...)
	}
	if len(notes) > 0 {
		add(strings.Join(notes, "; "), wgCommands(cfg, keyPath)...)
	}
	return steps, nil
}

// tablesDryRun adds the nftables tables Apply would write: the firewall,
// the port guard and the gateway filter, in that order.
func (h *Helper) tablesDryRun(ctx context.Context, spec helperapi.Spec, p plan, add func(string, ...string)) error {
	fw := makeFirewall(spec, p)
	haveFW, err := nftTable{}.Table(ctx)
	if err != nil {
		return err
	}
	if d := fwDiff(fw, haveFW); len(d) > 0 {
		add("firewall: "+differences(d), nftScript(fw))
	}
	guard := guardFor(guardVMs(spec))
	haveGuard, err := readGuard(guard)
	if err != nil {
		return err
	}
	if d := guardDiff(guard, haveGuard); len(d) > 0 {
		add("guard: "+differences(d), guardScript(guard))
	}
	gw := gatewayFilter(p)
	haveGW, err := nftTable{bridge: true}.Table(ctx)
	if err != nil {
		return err
	}
	if d := fwDiff(gw, haveGW); len(d) > 0 {
		add("gateway filter: "+differences(d), nftScript(gw))
	}
	return nil
}

// ipv6DryRun adds turning IPv6 off on links: on those that exist where it
// is not off yet, on those to be made always.
func ipv6DryRun(links []string, have map[string]Link, add func(string, ...string)) error {
	var existing []string
	for _, l := range links {
		if _, ok := have[l]; ok {
			existing = append(existing, l)
			continue
		}
		var cmds []string
		for _, s := range ipv6Settings {
			cmds = append(cmds, sysctlCommand(linkSetting{"ipv6", s.Key}.sysctl(l), s.Value))
		}
		add("turn IPv6 off on "+l, cmds...)
	}
	drift, err := ipv6Drift(existing)
	for _, d := range drift {
		for _, s := range ipv6Settings {
			if s.Key == d[1] {
				add(fmt.Sprintf("set %s ipv6 %s %s", d[0], s.Key, s.Value), sysctlCommand(linkSetting{"ipv6", s.Key}.sysctl(d[0]), s.Value))
			}
		}
	}
	return err
}

// egressDryRun adds the forwarding switches egress needs that are not
// set yet, on links that exist or are to be made.
func egressDryRun(want map[string]bool, add func(string, ...string)) error {
	for _, l := range slices.Sorted(maps.Keys(want)) {
		on := want[l]
		v, ok, err := ipv4Forwarding.read(l)
		switch {
		case err != nil:
			return err
		case !ok && !on, ok && (v == "1") == on:
			continue
		}
		add(fmt.Sprintf("set %s forwarding %s", l, onOff(on)), sysctlCommand(ipv4Forwarding.sysctl(l), boolValue(on)))
	}
	return nil
}

// rotateKeyDryRun is RotateKey's dry run; the caller holds h.mu.
func (h *Helper) rotateKeyDryRun() ([]helperapi.DryRunStep, error) {
	keyPath := filepath.Join(h.state.dir, keyFile)
	steps := []helperapi.DryRunStep{{
		Change:   "make a new WireGuard key in place of the old one, keeping no copy (" + keyPath + ", mode 0600; it never leaves the machine)",
		Commands: []string{newKeyCommand(keyPath)},
	}}
	_, err := h.wg.Device(WireGuardName)
	switch {
	case errors.Is(err, os.ErrNotExist):
		steps = append(steps, helperapi.DryRunStep{Change: "no WireGuard device yet: the next apply makes it with the new key"})
	case err != nil:
		return nil, fmt.Errorf("read wireguard %q: %w", WireGuardName, err)
	default:
		steps = append(steps, helperapi.DryRunStep{Change: "wireguard set private key (the new one), keeping its port and peers",
			Commands: wgCommands(keyConfig(wgtypes.Key{}), keyPath)})
	}
	return steps, nil
}

// teardownDryRun is teardown's dry run; the caller holds h.mu.
func (h *Helper) teardownDryRun(ctx context.Context) ([]helperapi.DryRunStep, error) {
	var steps []helperapi.DryRunStep
	add := func(change string, cmds ...string) {
		steps = append(steps, helperapi.DryRunStep{Change: change, Commands: cmds})
	}
	if spec, ok, err := h.state.spec(); err == nil && ok {
		for _, z := range resolver.Zones(spec) {
			add("stop serving names for network " + z.Network + " (inside the helper daemon)")
		}
	}
	have, err := h.links.Links(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range diff(nil, have) {
		add(c.String(), changeCommands(c, c.Link)...)
	}
	for _, t := range []nftTable{{}, {bridge: true}} {
		if tab, err := t.Table(ctx); err != nil {
			return nil, err
		} else if tab != nil {
			add("remove table "+t.name(), nftDelete(t.name()))
		}
	}
	if g, err := readGuard(nil); err != nil {
		return nil, err
	} else if g != nil {
		add("remove table bridge "+GuardTable, nftDelete("bridge "+GuardTable))
	}
	if _, ok, err := h.state.spec(); err != nil {
		return nil, err
	} else if ok {
		add("forget the applied spec (the key stays)", "rm "+shellWord(filepath.Join(h.state.dir, specFile)))
	}
	return steps, nil
}

// differences sums up a table's differences in a line: the first, and
// how many more (the script shows the whole table).
func differences(d []string) string {
	if len(d) == 1 {
		return d[0]
	}
	return fmt.Sprintf("%s, and %d more differences", d[0], len(d)-1)
}

func boolValue(on bool) string {
	if on {
		return "1"
	}
	return "0"
}

// createVMDryRun is CreateVM's dry run: the image fetched first if the
// machine lacks it, and the domain Create would define, in full.
func (h *Helper) createVMDryRun(ctx context.Context, req helperapi.VMRequest) ([]helperapi.DryRunStep, error) {
	req = req.WithDefaults()
	if err := req.Check(); err != nil {
		return nil, &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: err.Error()}
	}
	src, err := helperapi.ParseSource(req.Image)
	if err != nil {
		return nil, fmt.Errorf("vm %q: %w", req.Name, err)
	}
	spec, err := h.vmSpec(req)
	if err != nil {
		return nil, err
	}
	var steps []helperapi.DryRunStep
	store := h.imageStore()
	img, ok, lookErr := store.Cached(src)
	if lookErr != nil || !ok {
		// An operator's file is known here by its content once uploaded.
		steps = append(steps, helperapi.DryRunStep{Change: "fetch image " + src.String() + " into the image store: this machine does not have it yet"})
		img = store.StandIn(src)
	}
	if err := withImage(&spec, img, req.Cmdline); err != nil {
		return nil, err
	}
	h.vmMu.Lock()
	open := h.vms != nil && h.vms.Connected()
	h.vmMu.Unlock()
	var cmds []string
	if open {
		var m *vm.Manager
		if m, err = h.vmManager(ctx); err != nil {
			return nil, err
		}
		cmds, err = m.CreateDryRun(ctx, spec)
	} else {
		// Opening libvirt would make the storage pools: say so instead.
		cmds, err = vm.CreateDryRunUnconnected(ctx, h.vmOpts, spec)
	}
	if err != nil {
		return nil, err
	}
	return append(steps, helperapi.DryRunStep{Change: "create vm " + req.Name, Commands: cmds}), nil
}

// vmDryRun is a VM action's dry run.
func (h *Helper) vmDryRun(ctx context.Context, a helperapi.VMActionRequest) ([]helperapi.DryRunStep, error) {
	m, err := h.vmManager(ctx)
	if err != nil {
		return nil, err
	}
	cmds, err := m.DryRun(ctx, a.Name, a.Action, a.Force)
	if err != nil || len(cmds) == 0 {
		return nil, err
	}
	return []helperapi.DryRunStep{{Change: a.Action + " vm " + a.Name, Commands: cmds}}, nil
}
