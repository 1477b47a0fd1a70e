package tui

import "charm.land/bubbles/v2/key"

// keyMap is the one keymap; panes pick the bindings that work for them.
type keyMap struct {
	Up, Down, PageUp, PageDown, Top, Bottom   key.Binding
	NextTab, PrevTab, Machines, Networks, VMs key.Binding
	Filter, Help, Quit, Escape, Log           key.Binding
	Add, Start, Stop, Reboot, Remove, Console key.Binding
	SSH                                       key.Binding
	RotateKey, Sync, Links                    key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PageDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+d"), key.WithHelp("pgdn", "page down")),
		Top:      key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g/home", "first")),
		Bottom:   key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G/end", "last")),
		NextTab:  key.NewBinding(key.WithKeys("tab", "right", "l"), key.WithHelp("tab", "next pane")),
		PrevTab:  key.NewBinding(key.WithKeys("shift+tab", "left", "h"), key.WithHelp("shift+tab", "previous pane")),
		Machines: key.NewBinding(key.WithKeys("1"), key.WithHelp("1", "machines")),
		Networks: key.NewBinding(key.WithKeys("2"), key.WithHelp("2", "networks")),
		VMs:      key.NewBinding(key.WithKeys("3"), key.WithHelp("3", "VMs")),
		Filter:   key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Help:     key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "all keys")),
		Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Escape:   key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Log:      key.NewBinding(key.WithKeys("L"), key.WithHelp("L", "operations log")),
		Add:      key.NewBinding(key.WithKeys("a", "n"), key.WithHelp("a", "add")),
		Start:    key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "start")),
		Stop:     key.NewBinding(key.WithKeys("x"), key.WithHelp("x", "stop")),
		Reboot:   key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "reboot")),
		Remove:   key.NewBinding(key.WithKeys("d", "delete"), key.WithHelp("d", "remove")),
		Console:  key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "console")),
		// e as in "enter": s is start.
		SSH: key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "ssh")),
		// Machines: R and S, apart from the VMs' r (reboot) and s (start).
		RotateKey: key.NewBinding(key.WithKeys("R"), key.WithHelp("R", "rotate key")),
		Sync:      key.NewBinding(key.WithKeys("S"), key.WithHelp("S", "sync pending")),
		// Networks: a network's links, pair by pair.
		Links: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "links")),
	}
}
