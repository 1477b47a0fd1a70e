package plumbing

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// The helper's dry run on a fresh machine (a fresh namespace, an empty
// state folder) changes nothing: no key, no link, no table; it says the
// key is made first and names it by its file. After Apply of the same
// spec, its dry run has nothing left to do.
func TestHelperDryRun(t *testing.T) {
	inFreshNetns(t)
	ctx := context.Background()
	dir := t.TempDir()
	h, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	spec := testSpec(helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2", "m3"}})
	before := ruleset(t)
	d, err := h.DryRun(ctx, helperapi.DryRunRequest{Spec: &spec})
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, s := range d.Steps {
		text = append(text, "# "+s.Change)
		text = append(text, s.Commands...)
	}
	all := strings.Join(text, "\n")
	keyPath := filepath.Join(dir, keyFile)
	for _, want := range []string{"# make the machine's WireGuard key (" + keyPath,
		"ip link add name btwg0 mtu 1420 type wireguard", "ip link add name btbr1 ", "ip link add name btvx1 ",
		"wg set btwg0 private-key " + keyPath + " listen-port 51820", "wg set btwg0 peer ", "nft -f - <<'EOF'\ntable inet butter"} {
		if !strings.Contains(all, want) {
			t.Errorf("the dry run lacks %q:\n%s", want, all)
		}
	}
	if _, err := os.Stat(keyPath); err == nil {
		t.Errorf("the dry run made a key")
	}
	if ls, err := h.links.Links(ctx); err != nil || len(ls) != 0 {
		t.Errorf("the dry run made links: %+v, %v", ls, err)
	}
	if after := ruleset(t); after != before {
		t.Errorf("the dry run changed the ruleset:\n%s", after)
	}

	if _, err := h.Apply(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if d, err = h.DryRun(ctx, helperapi.DryRunRequest{Spec: &spec}); err != nil || len(d.Steps) != 0 {
		t.Errorf("after Apply the dry run still has %+v (%v)", d.Steps, err)
	}

	// A key rotation's dry run makes no key and leaves the device's as
	// it is; its commands make and use one by hand.
	keyBefore, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := h.wg.Device(WireGuardName)
	if err != nil {
		t.Fatal(err)
	}
	if d, err = h.DryRun(ctx, helperapi.DryRunRequest{RotateKey: true}); err != nil {
		t.Fatal(err)
	}
	var rotation []string
	for _, s := range d.Steps {
		rotation = append(rotation, s.Commands...)
	}
	want := []string{"(umask 077 && wg genkey > " + keyPath + ".new && mv " + keyPath + ".new " + keyPath + ")",
		"wg set btwg0 private-key " + keyPath}
	if strings.Join(rotation, "\n") != strings.Join(want, "\n") {
		t.Errorf("the rotation's dry run: %q, want %q", rotation, want)
	}
	if b, _ := os.ReadFile(keyPath); string(b) != string(keyBefore) {
		t.Errorf("the rotation's dry run changed the key file")
	}
	if now, err := h.wg.Device(WireGuardName); err != nil || now.PrivateKey != dev.PrivateKey {
		t.Errorf("the rotation's dry run changed the device's key (%v)", err)
	}

	d, err = h.DryRun(ctx, helperapi.DryRunRequest{Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	var removes []string
	for _, s := range d.Steps {
		removes = append(removes, s.Commands...)
	}
	for _, want := range []string{"ip link del dev btvx1", "ip link del dev btbr1", "ip link del dev btwg0",
		"nft delete table inet butter", "rm " + filepath.Join(dir, specFile)} {
		if !strings.Contains(strings.Join(removes, "\n"), want) {
			t.Errorf("the teardown's dry run lacks %q: %q", want, removes)
		}
	}
}
