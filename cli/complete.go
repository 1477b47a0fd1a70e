package cli

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/inventory"
)

// Dynamic completion: the names of machines, networks and VMs come from
// the inventory (the one --inventory names, wherever it stands on the line
// being completed). What a verb's arguments and flags complete is read
// from its definition, so that a new verb completes without a table:
//   - an argument a verb's Use calls NAME (or NAME...) is one of its
//     noun's names, MACHINE, NETWORK or VM one of those, except for create
//     and add, which make a new one;
//   - the string flags --machine and --network take one name, --machines
//     a comma-separated list.

// nameKind is what a list of names is of.
type nameKind int

const (
	machineNames nameKind = iota + 1
	networkNames
	vmNames
)

// kindOfNoun is the names each noun's verbs take.
var kindOfNoun = map[string]nameKind{"machine": machineNames, "network": networkNames, "vm": vmNames}

// kindOfFlag is the names each string flag takes; list flags take many.
var kindOfFlag = map[string]struct {
	kind nameKind
	list bool
}{
	"machine":  {machineNames, false},
	"machines": {machineNames, true},
	"network":  {networkNames, false},
}

// names is every name of kind in the inventory; an inventory that does
// not load completes nothing (completion must not print errors).
func (s *session) names(kind nameKind) []string {
	path, err := s.inventoryPath()
	if err != nil {
		return nil
	}
	inv, err := inventory.Load(path)
	if err != nil {
		return nil
	}
	var out []string
	switch kind {
	case machineNames:
		for _, m := range inv.Machines {
			out = append(out, m.Name)
		}
	case networkNames:
		for _, n := range inv.Networks {
			out = append(out, n.Name)
		}
	case vmNames:
		for _, v := range inv.VMs {
			out = append(out, v.Name)
		}
	}
	return out
}

// completeNames sets up c's argument and flag completion as above.
func (s *session) completeNames(c *cobra.Command) {
	if c.ValidArgsFunction == nil && c.HasParent() {
		if kind, many, ok := argKind(c); ok {
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
				if len(args) > 0 && !many {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return filterNames(s.names(kind), args, toComplete), cobra.ShellCompDirectiveNoFileComp
			}
		}
	}
	for name, fk := range kindOfFlag {
		f := c.Flags().Lookup(name)
		if f == nil || f.Value.Type() != "string" {
			continue
		}
		if _, done := c.GetFlagCompletionFunc(name); done {
			continue
		}
		fk := fk
		_ = c.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if !fk.list {
				return filterNames(s.names(fk.kind), nil, toComplete), cobra.ShellCompDirectiveNoFileComp
			}
			// A list: complete the last item, keeping the ones before.
			i := strings.LastIndex(toComplete, ",")
			before, last := toComplete[:i+1], toComplete[i+1:]
			taken := strings.Split(strings.TrimSuffix(before, ","), ",")
			var out []cobra.Completion
			for _, n := range filterNames(s.names(fk.kind), taken, last) {
				out = append(out, before+n)
			}
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		})
	}
}

// argKind is what c's arguments name, and whether it takes many.
func argKind(c *cobra.Command) (nameKind, bool, bool) {
	fields := strings.Fields(c.Use)
	if len(fields) < 2 || c.Name() == "create" || c.Name() == "add" {
		return 0, false, false
	}
	arg := strings.Trim(fields[1], "[]")
	arg, many := strings.CutSuffix(arg, "...")
	kind, ok := kindOfNoun[c.Parent().Name()]
	if arg != "NAME" {
		kind, ok = kindOfNoun[strings.ToLower(arg)]
	}
	return kind, many, ok
}

// filterNames is names that start with prefix and are not taken.
func filterNames(names, taken []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && !slices.Contains(taken, n) {
			out = append(out, n)
		}
	}
	return out
}
