package plumbing_test

import (
	"context"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// The scale of the performance issue's largest cloud: a machine with 31
// peers, every one of ten networks on every peer.
const (
	scalePeers    = 31
	scaleNetworks = 10
)

// TestApplyAtScale applies, on one machine of the chain lab, its spec grown
// to scalePeers peers and scaleNetworks networks on all of them (made-up
// peers beside the lab's two), then its own spec again: each applies with
// the tunnel ports its networks need, checks clean and applies again with
// no change, and the machine's real networks work throughout. A firewall
// table this size is one nf_tables batch larger than a netlink socket's
// default buffer.
func TestApplyAtScale(t *testing.T) {
	needChainLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	c := startChain(t, ctx, "sc")
	m := c.lab.Machines[len(c.lab.Machines)-1]
	own := c.helpers.Specs[m.Name]
	grown, err := testbed.GrowSpec(own, scalePeers, scaleNetworks, m.Addr.Masked())
	if err != nil {
		t.Fatal(err)
	}
	apply := func(what string, spec helperapi.Spec) {
		t.Helper()
		start := time.Now()
		rep, err := c.butter.Apply(ctx, m, spec)
		if err != nil {
			t.Fatalf("%s: apply %d peers, %d networks: %v", m.Name, len(spec.Peers), len(spec.Networks), err)
		}
		t.Logf("%s: %s applied in %v, %d changes", m.Name, what, time.Since(start).Round(time.Millisecond), len(rep.Changes))
		got, want := testbed.TunnelPorts(spec, rep)
		if len(rep.Networks) != len(spec.Networks) || got != want {
			t.Errorf("%s: %s: %d networks, %d tunnel ports reported; want %d, %d", m.Name, what, len(rep.Networks), got, len(spec.Networks), want)
		}
		if drift, err := c.butter.Check(ctx, m, spec); err != nil || len(drift) != 0 {
			t.Errorf("%s: %s: check after apply: %v, drift %+v", m.Name, what, err, drift)
		}
		if rep, err := c.butter.Apply(ctx, m, spec); err != nil || len(rep.Changes) != 0 {
			t.Errorf("%s: %s: applied again: %v, changes %q", m.Name, what, err, rep.Changes)
		}
		c.pingAll(t, ctx, 10*time.Second)
	}
	apply("the grown spec", grown)
	apply("its own spec again", own)
}
