package tui

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// action runs the focused pane's verbs; a verb that does not apply says
// why instead of doing nothing.
func (m *Model) action(msg tea.KeyPressMsg) tea.Cmd {
	sel, ok := m.tables[m.focus].Selected()
	for _, v := range m.paneVerbs() {
		if !key.Matches(msg, v.key) {
			continue
		}
		if v.needs != "" && !ok {
			m.setStatus("select a "+v.needs+" first", true)
			return nil
		}
		return v.do(sel.id)
	}
	if why := m.disabledReason(msg); why != "" {
		m.setStatus(why, true)
	}
	return nil
}

// paneVerb is one key of a pane: what it must have selected ("" for a
// verb that needs nothing) and what it does, given the selection's id.
type paneVerb struct {
	key   key.Binding
	needs string
	do    func(id string) tea.Cmd
}

// paneVerbs are the focused pane's verbs, first match first.
func (m *Model) paneVerbs() []paneVerb {
	k := m.keys
	switch m.focus {
	case paneMachines:
		return []paneVerb{
			{k.Add, "", func(string) tea.Cmd { return m.openAddMachine() }},
			{k.Remove, "machine", m.confirmRemoveMachine},
			{k.RotateKey, "machine", m.confirmRotateKey},
			{k.Sync, "", func(string) tea.Cmd { return m.syncNow() }},
		}
	case paneNetworks:
		return []paneVerb{
			{k.Add, "", func(string) tea.Cmd { return m.openCreateNetwork() }},
			{k.Remove, "network", m.confirmRemoveNetwork},
			{k.Links, "network", func(id string) tea.Cmd { m.links = id; return nil }},
		}
	case paneVMs:
		vmAction := func(action string) func(string) tea.Cmd {
			return func(id string) tea.Cmd { return m.vmAction(id, action) }
		}
		return []paneVerb{
			{k.Add, "", func(string) tea.Cmd { return m.openCreateVM() }},
			{k.Start, "VM", vmAction("start")},
			{k.Stop, "VM", vmAction("stop")},
			{k.Reboot, "VM", vmAction("reboot")},
			{k.Remove, "VM", m.confirmRemoveVM},
			{k.Console, "VM", m.console},
			{k.SSH, "VM", m.ssh},
		}
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
