package tui

import (
	"context"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// The machines pane's verbs that change the cloud: remove a machine (or
// drop one that does not answer), rotate a key, and the rotation offered
// after a removal that left a machine trusting the removed one.

// confirmRemoveMachine asks before removing a machine; one that does not
// answer cannot be torn down, so it is offered to be dropped instead.
func (m *Model) confirmRemoveMachine(name string) tea.Cmd {
	if _, word := m.data.status(name); word == cloud.StatusOffline {
		return m.confirmDropMachine(name)
	}
	n := 0
	for _, v := range m.data.vms {
		if v.Machine == name {
			n++
		}
	}
	cl := m.cl
	return m.withPlan("butter machine remove "+name, func(ctx context.Context) (cloud.DryRun, error) {
		return cl.DryRunRemoveMachine(ctx, name, false)
	}, func(plan string) tea.Cmd {
		yes := false
		return m.openForm("Remove machine "+name, func() tea.Cmd {
			if !yes {
				return nil
			}
			return m.removeMachine(name, false)
		}, nil, huh.NewGroup(huh.NewConfirm().
			Title("Remove machine "+name+" from the cloud?").
			Description(fmt.Sprintf("Its %d VMs and their disks are destroyed, and it leaves every network.\n\n%s", n, plan)).
			Affirmative("Remove").Negative("Keep").Value(&yes)))
	})
}

// confirmDropMachine offers to take a machine that does not answer out
// of the cloud without touching it, naming the VMs written off.
func (m *Model) confirmDropMachine(name string) tea.Cmd {
	st, _ := m.data.status(name)
	why := ""
	if st.Problem != "" {
		why = " (" + ansi.Truncate(oneLine(st.Problem), 80, "…") + ")"
	}
	desc := fmt.Sprintf("It does not answer%s, so it cannot be torn down. Dropping it takes it out of the cloud "+
		"without touching it: every other machine drops it and its key, and whatever runs on it is left there, cut off.\n\n", why)
	if vms := m.data.vmsOf(name); len(vms) > 0 {
		desc += fmt.Sprintf("Its %s written off: %s.", plural(len(vms), "VM is", "VMs are"), strings.Join(vms, ", "))
	} else {
		desc += "It has no VMs."
	}
	cl := m.cl
	return m.withPlan("butter machine remove --force "+name, func(ctx context.Context) (cloud.DryRun, error) {
		return cl.DryRunRemoveMachine(ctx, name, true)
	}, func(plan string) tea.Cmd {
		yes := false
		return m.openForm("Machine "+name+" does not answer", func() tea.Cmd {
			if !yes {
				return nil
			}
			return m.removeMachine(name, true)
		}, nil, huh.NewGroup(huh.NewConfirm().
			Title("Drop machine "+name+" from the cloud without touching it?").
			Description(desc+"\n\n"+plan).
			Affirmative("Drop it").Negative("Keep").Value(&yes)))
	})
}

// removeMachine removes a machine (force: drops it untouched); when
// machines that were away still trust it, rotation is offered after.
func (m *Model) removeMachine(name string, force bool) tea.Cmd {
	title := "remove machine " + name
	if force {
		title = "drop machine " + name
	}
	cl := m.cl
	return m.startTask(title, taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
		r, err := cl.RemoveMachine(ctx, name, force, steps)
		if err != nil {
			return "", nil, err
		}
		text := "machine " + name + " removed"
		if len(r.WrittenOff) > 0 {
			text += "; written off with it (never touched): vm " + strings.Join(r.WrittenOff, ", vm ")
		}
		text += r.Note()
		t := r.StillTrusting()
		if len(t) == 0 {
			return text, nil, nil
		}
		text += fmt.Sprintf(". %s still %s %s's key until %s back", strings.Join(t, ", "),
			plural(len(t), "holds", "hold"), name, plural(len(t), "it is", "they are"))
		return text, rotateOfferMsg{removed: name, trusting: t}, nil
	})
}

// rotateOfferMsg: machine removed was dropped while the machines trusting
// were away; they still hold its key.
type rotateOfferMsg struct {
	removed  string
	trusting []string
}

// offerRotation asks whether to rotate every key now, once no other form
// is open.
func (m *Model) offerRotation(o rotateOfferMsg) tea.Cmd {
	if m.form != nil {
		m.queued = append(m.queued, func() tea.Cmd { return m.offerRotation(o) })
		return nil
	}
	who := strings.Join(o.trusting, ", ")
	desc := fmt.Sprintf("Machine %s is removed, but %s %s away: %s still %s %s's key until %s back and %s up, "+
		"so %s could still reach %s.\n\n"+
		"Rotating gives every machine that answers a new WireGuard key, made on the machine; traffic across each "+
		"pauses for about a handshake. Machines that are away keep theirs: rotate them when they are back (R).",
		o.removed, who, plural(len(o.trusting), "was", "were"), plural(len(o.trusting), "it", "they"),
		plural(len(o.trusting), "holds", "hold"), o.removed, plural(len(o.trusting), "it is", "they are"),
		plural(len(o.trusting), "catches", "catch"), o.removed, plural(len(o.trusting), "it", "them"))
	yes := false
	return m.openForm("Machine "+o.removed+" removed", func() tea.Cmd {
		if !yes {
			m.setStatus(fmt.Sprintf("keys not rotated: %s still %s %s's key until %s back (R rotates a key)",
				who, plural(len(o.trusting), "holds", "hold"), o.removed, plural(len(o.trusting), "it is", "they are")), false)
			return nil
		}
		return m.rotateKeys(nil)
	}, nil, huh.NewGroup(huh.NewConfirm().
		Title("Rotate every key now?").
		Description(desc).
		Affirmative("Rotate every key").Negative("Not now").Value(&yes)))
}

// confirmRotateKey asks before giving a machine a new key.
func (m *Model) confirmRotateKey(name string) tea.Cmd {
	if _, word := m.data.status(name); word == cloud.StatusOffline {
		m.setStatus(fmt.Sprintf("rotate key: %s does not answer; rotate its key when it is back", name), true)
		return nil
	}
	yes := false
	return m.openForm("Rotate the key of "+name, func() tea.Cmd {
		if !yes {
			return nil
		}
		return m.rotateKeys([]string{name})
	}, nil, huh.NewGroup(huh.NewConfirm().
		Title("Give "+name+" a new WireGuard key?").
		Description("The key is made on "+name+" and never leaves it; every peer is given the new public key. "+
			"Traffic across "+name+" pauses for about a handshake while its peers take it. "+
			"Peers that are away get it when they return.").
		Affirmative("Rotate").Negative("Keep").Value(&yes)))
}

// rotateKeys gives the named machines (every machine when none) new keys.
func (m *Model) rotateKeys(names []string) tea.Cmd {
	title := "rotate every key"
	if len(names) > 0 {
		title = "rotate the key of " + strings.Join(names, ", ")
	}
	cl := m.cl
	return m.startTask(title, taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
		r, err := cl.RotateKey(ctx, names, steps)
		if err != nil {
			return "", nil, err
		}
		text := "new key on " + strings.Join(r.Rotated, ", ")
		for _, b := range r.NotRotated {
			why := "away"
			if !b.Away {
				why = oneLine(b.Err.Error())
			}
			text += fmt.Sprintf("; %s kept its key (%s)", b.Machine, why)
		}
		return text + r.Note(), nil, nil
	})
}

// plural picks one or many by n.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
