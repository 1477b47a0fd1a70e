package tui

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// action runs the focused pane's verbs; a verb that does not apply says
// why instead of doing nothing.
func (m *Model) action(msg tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	sel, ok := m.tables[m.focus].Selected()
	need := func(what string) bool {
		if !ok {
			m.setStatus("select a "+what+" first", true)
		}
		return ok
	}
	switch m.focus {
	case paneMachines:
		switch {
		case key.Matches(msg, k.Add):
			return m.openAddMachine()
		case key.Matches(msg, k.Remove):
			if need("machine") {
				return m.confirmRemoveMachine(sel.id)
			}
			return nil
		case key.Matches(msg, k.RotateKey):
			if need("machine") {
				return m.confirmRotateKey(sel.id)
			}
			return nil
		case key.Matches(msg, k.Sync):
			return m.syncNow()
		}
	case paneNetworks:
		switch {
		case key.Matches(msg, k.Add):
			return m.openCreateNetwork()
		case key.Matches(msg, k.Remove):
			if need("network") {
				return m.confirmRemoveNetwork(sel.id)
			}
			return nil
		case key.Matches(msg, k.Links):
			if need("network") {
				m.links = sel.id
			}
			return nil
		}
	case paneVMs:
		switch {
		case key.Matches(msg, k.Add):
			return m.openCreateVM()
		case key.Matches(msg, k.Start):
			if need("VM") {
				return m.vmAction(sel.id, "start")
			}
			return nil
		case key.Matches(msg, k.Stop):
			if need("VM") {
				return m.vmAction(sel.id, "stop")
			}
			return nil
		case key.Matches(msg, k.Reboot):
			if need("VM") {
				return m.vmAction(sel.id, "reboot")
			}
			return nil
		case key.Matches(msg, k.Remove):
			if need("VM") {
				return m.confirmRemoveVM(sel.id)
			}
			return nil
		case key.Matches(msg, k.Console):
			if need("VM") {
				return m.console(sel.id)
			}
			return nil
		case key.Matches(msg, k.SSH):
			if need("VM") {
				return m.ssh(sel.id)
			}
			return nil
		}
	}
	if why := m.disabledReason(msg); why != "" {
		m.setStatus(why, true)
	}
	return nil
}

// disabledReason says why a key does nothing here.
func (m *Model) disabledReason(msg tea.KeyPressMsg) string {
	k := m.keys
	switch {
	case key.Matches(msg, k.Console):
		return "console: only a VM has one; press 3 for the VMs"
	case key.Matches(msg, k.SSH):
		return "ssh: only a VM can be logged in to; press 3 for the VMs"
	case key.Matches(msg, k.Start, k.Stop, k.Reboot):
		return msg.String() + ": starts, stops and reboots are for VMs; press 3 for the VMs"
	case key.Matches(msg, k.RotateKey):
		return "R: keys are the machines'; press 1 for the machines"
	case key.Matches(msg, k.Sync):
		return "S: syncing is for machines; press 1 for the machines"
	}
	return ""
}

// paneKeys are the keys that work in the focused pane, for the footer.
func (m *Model) paneKeys() []key.Binding {
	k := m.keys
	add := func(help string) key.Binding {
		b := k.Add
		b.SetHelp("a", help)
		return b
	}
	var ks []key.Binding
	switch m.focus {
	case paneMachines:
		ks = []key.Binding{add("add machine"), k.Remove, k.RotateKey, k.Sync}
	case paneNetworks:
		ks = []key.Binding{add("new network"), k.Links, k.Remove}
	case paneVMs:
		ks = []key.Binding{add("new VM"), k.Console, k.Start, k.Stop, k.Reboot, k.Remove, k.SSH}
	}
	return append(ks, k.NextTab, k.Filter, k.Help, k.Quit)
}
