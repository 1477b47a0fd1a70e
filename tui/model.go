package tui

import (
	"context"
	"fmt"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
)

// Model is the dashboard's root: it owns the layout, the focus and the
// modals, routes keys (global bindings first, then the focused pane) and
// hands async results to whoever asked for them.
//
// Here are the model and its routing; layout.go draws it, watch.go feeds
// it the cloud's events, panes.go and table.go are the panes, actions.go
// their verbs, forms.go and modal.go the forms over them, ops.go the
// tasks the verbs start.
type Model struct {
	opts Options
	run  runnerFunc
	ask  Ask
	conn cloud.Connector
	cl   *cloud.Cloud

	keys keyMap
	st   styles
	help help.Model

	width, height int

	data   *store
	tables [paneCount]*table
	dirty  paneSet
	focus  pane
	arr    arrangement

	events    chan cloud.Event
	gen       int
	stopWatch func()
	inbox     chan tea.Msg

	filtering bool
	filters   [paneCount]string

	showHelp, showLog bool
	links             string // the network whose links are shown
	welcome           int    // the welcome menu's cursor

	form   *modalForm
	asks   []askMsg
	queued []func() tea.Cmd // forms waiting for the open one to close
	tasks  []*task
	shown  *task
	seq    int

	status    string
	statusErr bool
}

// New makes the dashboard for o; Run gives it its context.
func New(o Options) *Model {
	m := &Model{
		opts:  o,
		keys:  newKeyMap(),
		st:    newStyles(true),
		help:  help.New(),
		data:  newStore(),
		inbox: make(chan tea.Msg, 256),
		run:   runner(context.Background()),
	}
	m.help.Styles = help.DefaultStyles(true)
	m.ask = m.askUser
	m.open(o.Inventory)
	for p := range paneCount {
		m.tables[p] = newTable(paneDefs[p].cols...)
	}
	m.resize(80, 24)
	return m
}

// open opens the cloud at path (the watch is restarted by the caller).
func (m *Model) open(path string) {
	m.opts.Inventory = path
	if m.opts.Connector != nil {
		m.conn = m.opts.Connector(path, m.ask)
	} else {
		m.conn = cloud.SSH{InstallPrerequisites: func(ctx context.Context, machine, missing, command string) (bool, error) {
			return m.ask(ctx, fmt.Sprintf("Install %s on %s?", missing, machine), "butter will run, as root:\n  "+command)
		}}
	}
	m.cl = cloud.New(path, m.conn, m.opts.Log)
}

// Close stops watching and hangs up every machine.
func (m *Model) Close() error {
	if m.stopWatch != nil {
		m.stopWatch()
	}
	return m.cl.Close()
}

func (m *Model) Init() tea.Cmd {
	return tea.Batch(tea.RequestBackgroundColor, m.startWatch(), m.listenInbox())
}

// resize gives every pane (and the open form) the room it has.
func (m *Model) resize(w, h int) {
	m.width, m.height = w, h
	m.help.SetWidth(w)
	m.arrange()
	if m.form != nil {
		m.form.resize(w, h)
	}
}

func (m *Model) setStatus(text string, isErr bool) {
	m.status, m.statusErr = text, isErr
}

// welcoming says the cloud has no machines yet: the first run.
func (m *Model) welcoming() bool {
	return m.data.inv != nil && len(m.data.inv.Machines) == 0
}

// Update routes msg: a resize to every pane and the open form, the
// watch's events to the store, a task's messages to its task, a key
// through key, anything else to the open form.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.resize(msg.Width, msg.Height)
		if m.form != nil {
			return m, m.updateForm(msg)
		}
		return m, nil
	case tea.BackgroundColorMsg:
		m.st = newStyles(msg.IsDark())
		m.help.Styles = help.DefaultStyles(msg.IsDark())
		if m.form != nil {
			m.updateForm(msg)
		}
		return m, nil
	case eventsMsg:
		if msg.gen != m.gen {
			return m, nil
		}
		m.applyEvents(msg.events)
		return m, tea.Batch(nextEvents(msg.gen, m.events), m.autoSync())
	case watchEndedMsg:
		return m, nil
	case inboxMsg:
		_, cmd := m.Update(msg.msg)
		return m, tea.Batch(cmd, m.listenInbox())
	case stepMsg, progressMsg:
		m.taskMsg(msg)
		return m, nil
	case askMsg:
		m.asks = append(m.asks, msg)
		return m, m.nextAsk()
	case rotateOfferMsg:
		return m, m.offerRotation(msg)
	case planMsg:
		return m, m.openPlanned(msg)
	case taskDoneMsg:
		return m, m.taskDone(msg)
	case syncDoneMsg:
		m.syncDone(msg)
		return m, nil
	case sshDoneMsg:
		m.handedBack("ssh to "+msg.vm, "logged out of "+msg.vm, msg.err)
		return m, nil
	case consoleDoneMsg:
		m.handedBack("console of "+msg.vm, "detached from "+msg.vm, msg.err)
		return m, nil
	case inventoryMsg:
		if msg.err != nil {
			m.setStatus(msg.err.Error(), true)
			return m, nil
		}
		m.applyEvents([]cloud.Event{{Inventory: msg.inv}})
		return m, nil
	case labMsg:
		m.cl.Close()
		m.open(msg.path)
		m.data = newStore()
		m.dirty = allPanes
		m.rebuild()
		return m, m.startWatch()
	case tea.KeyPressMsg:
		return m, m.key(msg)
	}
	if m.form != nil {
		return m, m.updateForm(msg)
	}
	return m, nil
}

// key routes a key press: an open form takes everything; then the filter
// input; then overlays; then the global bindings; then the focused pane.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	if m.form != nil {
		return m.updateForm(msg)
	}
	if m.filtering {
		return m.filterKey(msg)
	}
	k := m.keys
	switch {
	case m.showHelp:
		if key.Matches(msg, k.Help, k.Escape, k.Quit) {
			m.showHelp = false
		}
		return nil
	case m.showLog:
		if key.Matches(msg, k.Log, k.Escape, k.Quit) {
			m.showLog = false
		}
		return nil
	case m.links != "":
		if key.Matches(msg, k.Escape, k.Links, k.Quit) {
			m.links = ""
		}
		return nil
	case m.shown != nil:
		if key.Matches(msg, k.Escape) || (!m.shown.running && msg.String() == "enter") {
			if m.shown.running {
				m.setStatus(m.shown.title+" goes on in the background (L shows the log)", false)
			}
			m.shown = nil
		}
		if msg.String() == "ctrl+c" {
			return tea.Quit
		}
		return nil
	}
	switch {
	case key.Matches(msg, k.Quit):
		return tea.Quit
	case key.Matches(msg, k.Help):
		m.showHelp = true
		return nil
	case key.Matches(msg, k.Log):
		m.showLog = true
		return nil
	}
	if m.welcoming() {
		return m.welcomeKey(msg)
	}
	// The dashboard's own: which pane, its filter.
	switch {
	case key.Matches(msg, k.Escape):
		if m.filters[m.focus] != "" {
			m.filters[m.focus] = ""
			m.tables[m.focus].SetFilter("")
			m.arrange()
		}
		m.setStatus("", false)
	case key.Matches(msg, k.NextTab):
		m.focus = (m.focus + 1) % paneCount
	case key.Matches(msg, k.PrevTab):
		m.focus = (m.focus + paneCount - 1) % paneCount
	case key.Matches(msg, k.Machines):
		m.focus = paneMachines
	case key.Matches(msg, k.Networks):
		m.focus = paneNetworks
	case key.Matches(msg, k.VMs):
		m.focus = paneVMs
	case key.Matches(msg, k.Filter):
		m.filtering = true
	default:
		// Then only the focused pane: its cursor, then its verbs.
		if m.tables[m.focus].Update(msg, k) {
			return nil
		}
		return m.action(msg)
	}
	return nil
}

func (m *Model) filterKey(msg tea.KeyPressMsg) tea.Cmd {
	f := m.filters[m.focus]
	switch msg.String() {
	case "enter":
		m.filtering = false
	case "esc":
		m.filtering = false
		f = ""
	case "backspace":
		if f != "" {
			r := []rune(f)
			f = string(r[:len(r)-1])
		}
	case "ctrl+u":
		f = ""
	case "up", "down":
		m.tables[m.focus].Move(map[string]int{"up": -1, "down": 1}[msg.String()])
		return nil
	case "ctrl+c":
		return tea.Quit
	default:
		if msg.Text != "" {
			f += msg.Text
		}
	}
	m.filters[m.focus] = f
	m.tables[m.focus].SetFilter(f)
	m.arrange()
	return nil
}
