package plumbing

import (
	"context"
	"fmt"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// nftTable is the helper's firewall table in the kernel of the current
// network namespace, read and written through nf_tables netlink: the inet
// one, or with bridge the bridge-family gateway filter. It holds no
// connection: each call opens its own.
type nftTable struct{ bridge bool }

var butterTable = &nftables.Table{Name: FirewallTable, Family: nftables.TableFamilyINet}

var bridgeTable = &nftables.Table{Name: FirewallTable, Family: nftables.TableFamilyBridge}

func (k nftTable) table() *nftables.Table {
	if k.bridge {
		return bridgeTable
	}
	return butterTable
}

func (k nftTable) name() string { return fwTable{Family: k.family()}.name() }

func (k nftTable) family() string {
	if k.bridge {
		return "bridge"
	}
	return ""
}

// hooks maps fwChain.Hook to netfilter's hook numbers (the bridge family
// numbers its hooks the same way).
var hooks = map[string]nftables.ChainHook{
	"prerouting":  *nftables.ChainHookPrerouting,
	"input":       *nftables.ChainHookInput,
	"forward":     *nftables.ChainHookForward,
	"output":      *nftables.ChainHookOutput,
	"postrouting": *nftables.ChainHookPostrouting,
}

func (k nftTable) Table(ctx context.Context) (*fwTable, error) {
	out := &fwTable{Family: k.family()}
	dormant, ok, err := readTable(k.table(), func(ch *nftables.Chain, rules []*nftables.Rule) {
		fc := fwChain{Name: ch.Name}
		fc.Hook, fc.Priority, fc.Policy = chainHeader(ch, hooks)
		if ch.Type != nftables.ChainTypeFilter {
			fc.Type = string(ch.Type)
		}
		for _, r := range rules {
			fc.Rules = append(fc.Rules, decodeRule(r.Exprs))
		}
		out.Chains = append(out.Chains, fc)
	})
	if err != nil || !ok {
		return nil, err
	}
	out.Dormant = dormant
	return out, nil
}

func (k nftTable) Write(ctx context.Context, t fwTable) error {
	c, err := openNFT()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	if t.Family != k.family() {
		return fmt.Errorf("write table %s as table %s: not the same table", t.name(), k.name())
	}
	table := k.table()
	// One batch, one transaction: make sure the table exists, delete it
	// with whatever it holds, and make it again as planned.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	for _, fc := range t.Chains {
		hook, ok := hooks[fc.Hook]
		if !ok {
			return fmt.Errorf("chain %s: unknown hook %q", fc.Name, fc.Hook)
		}
		policy := nftables.ChainPolicyAccept
		if fc.Policy == VerdictDrop {
			policy = nftables.ChainPolicyDrop
		}
		typ := nftables.ChainTypeFilter
		switch fc.Type {
		case "":
		case "nat":
			typ = nftables.ChainTypeNAT
		default:
			return fmt.Errorf("chain %s: unknown type %q", fc.Name, fc.Type)
		}
		ch := c.AddChain(&nftables.Chain{
			Name: fc.Name, Table: table, Type: typ,
			Hooknum: &hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(fc.Priority)), Policy: &policy,
		})
		for _, r := range fc.Rules {
			exprs, err := encodeRule(r)
			if err != nil {
				return fmt.Errorf("chain %s: %w", fc.Name, err)
			}
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.String())})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write table %s: %w", k.name(), err)
	}
	return nil
}

func (k nftTable) Delete(ctx context.Context) error {
	if err := deleteTable(k.table()); err != nil {
		return fmt.Errorf("%s: %w", k.name(), err)
	}
	return nil
}

// applyFirewall converges the firewall table for spec, whose links are
// p's. The links need not exist yet. (setIPv6Off, once they do, turns IPv6
// off on them.)
func (h *Helper) applyFirewall(ctx context.Context, spec helperapi.Spec, p plan) ([]string, error) {
	changes, err := convergeFirewall(ctx, nftTable{}, makeFirewall(spec, p))
	if err != nil {
		return nil, fmt.Errorf("apply firewall: %w", err)
	}
	return changes, nil
}

// firewallDrift is how the firewall table and the links' IPv6 settings
// differ from what spec wants.
func (h *Helper) firewallDrift(ctx context.Context, spec helperapi.Spec, p plan) ([]helperapi.Drift, error) {
	have, err := nftTable{}.Table(ctx)
	if err != nil {
		return nil, err
	}
	var out []helperapi.Drift
	for _, d := range fwDiff(makeFirewall(spec, p), have) {
		out = append(out, helperapi.Drift{Link: "firewall", Problem: d})
	}
	v6, err := ipv6Drift(ipv6Off(p))
	for _, d := range v6 {
		out = append(out, helperapi.Drift{Link: d[0], Problem: fmt.Sprintf("ipv6 %s is %s, want IPv6 off", d[1], d[2])})
	}
	return out, err
}

// removeFirewall deletes the firewall table, if there is one. The links'
// IPv6 settings go with the links.
func (h *Helper) removeFirewall(ctx context.Context) error {
	t := nftTable{}
	have, err := t.Table(ctx)
	if err != nil || have == nil {
		return err
	}
	if err := t.Delete(ctx); err != nil {
		return err
	}
	h.log.Info("removed", "change", "firewall: table inet "+FirewallTable)
	return nil
}
