package plumbing

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// fwDiff says, one line each, how have (nil: no table) differs from want;
// nothing when they are the same.
func fwDiff(want fwTable, have *fwTable) []string {
	if have == nil {
		return []string{fmt.Sprintf("table %s missing", want.name())}
	}
	var out []string
	if have.Dormant {
		out = append(out, fmt.Sprintf("table %s is dormant", want.name()))
	}
	haveBy := map[string]fwChain{}
	for _, c := range have.Chains {
		haveBy[c.Name] = c
	}
	wanted := map[string]bool{}
	for _, w := range want.Chains {
		wanted[w.Name] = true
		h, ok := haveBy[w.Name]
		if !ok {
			out = append(out, fmt.Sprintf("chain %s missing", w.Name))
			continue
		}
		if h.header() != w.header() {
			out = append(out, fmt.Sprintf("chain %s has %s, want %s", w.Name, h.header(), w.header()))
		}
		out = append(out, ruleDiff(w.Name, w.Rules, h.Rules)...)
	}
	for _, h := range have.Chains {
		if !wanted[h.Name] {
			out = append(out, fmt.Sprintf("extra chain %s", h.Name))
		}
	}
	return out
}

// ruleDiff compares a chain's rules, which count in order.
func ruleDiff(chain string, want, have []fwRule) []string {
	text := func(rs []fwRule) []string {
		s := make([]string, len(rs))
		for i, r := range rs {
			s[i] = r.String()
		}
		return s
	}
	return textDiff(chain, text(want), text(have))
}

// textDiff compares a chain's rules in words, which count in order.
func textDiff(chain string, w, h []string) []string {
	if slices.Equal(w, h) {
		return nil
	}
	count := map[string]int{}
	for _, s := range h {
		count[s]++
	}
	var out []string
	for _, s := range w {
		if count[s] > 0 {
			count[s]--
			continue
		}
		out = append(out, fmt.Sprintf("%s: missing rule: %s", chain, s))
	}
	for _, s := range h {
		if count[s] > 0 {
			count[s]--
			out = append(out, fmt.Sprintf("%s: extra rule: %s", chain, s))
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("%s: rules out of order", chain))
	}
	return out
}

// ruleTable is the kernel's firewall table, as far as the helper needs it.
type ruleTable interface {
	// Table reads the helper's table; nil when there is none.
	Table(ctx context.Context) (*fwTable, error)
	// Write replaces the helper's table with t in one transaction: at no
	// moment is there half a table, or none.
	Write(ctx context.Context, t fwTable) error
	// Delete removes the helper's table; one already gone is not an
	// error.
	Delete(ctx context.Context) error
}

// convergeFirewall makes the helper's table want, if it differs, and
// returns what differed. It reads the table back, so a write the kernel
// took otherwise than meant is an error, not a table rewritten on every
// apply.
func convergeFirewall(ctx context.Context, t ruleTable, want fwTable) ([]string, error) {
	have, err := t.Table(ctx)
	if err != nil {
		return nil, err
	}
	diff := fwDiff(want, have)
	if len(diff) == 0 {
		return nil, nil
	}
	if err := t.Write(ctx, want); err != nil {
		return nil, err
	}
	have, err = t.Table(ctx)
	if err != nil {
		return nil, err
	}
	if left := fwDiff(want, have); len(left) > 0 {
		return nil, fmt.Errorf("table %s written but it reads back otherwise: %s", want.name(), strings.Join(left, "; "))
	}
	changes := make([]string, len(diff))
	for i, d := range diff {
		changes[i] = "firewall: " + d
	}
	return changes, nil
}
