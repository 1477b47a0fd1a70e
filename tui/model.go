package tui

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/butter-cloud/butter/cloud"
)

// Model is the dashboard's root: it owns the layout, the focus and the
// modals, routes keys (global bindings first, then the focused pane) and
// hands async results to whoever asked for them.
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

	events    chan cloud.Event
	gen       int
	stopWatch func()
	inbox     chan tea.Msg

	filtering bool
	filters   [paneCount]string

	showHelp, showLog bool
	welcome           int // the welcome menu's cursor

	form  *modalForm
	asks  []askMsg
	tasks []*task
	shown *task
	seq   int

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
	m.tables[paneMachines] = newTable(
		column{title: "NAME", max: 24}, column{title: "STATUS", max: 10}, column{title: "HELPER", max: 12},
		column{title: "MESH IP", max: 15}, column{title: "HANDSHAKE", max: 12}, column{title: "CPU", max: 5, right: true},
		column{title: "MEM", max: 5, right: true}, column{title: "VMS", max: 4, right: true})
	m.tables[paneNetworks] = newTable(
		column{title: "NAME", max: 20}, column{title: "SUBNET", max: 18}, column{title: "MACHINES", max: 28},
		column{title: "MTU", max: 5, right: true}, column{title: "TUNNEL", max: 7}, column{title: "LINKS", max: 14})
	m.tables[paneVMs] = newTable(
		column{title: "NAME", max: 24}, column{title: "STATE", max: 10}, column{title: "MACHINE", max: 16},
		column{title: "NETWORK", max: 14}, column{title: "ADDRESS", max: 15}, column{title: "CPU", max: 5, right: true},
		column{title: "MEM", max: 6, right: true})
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

// Messages.
type (
	eventsMsg struct {
		gen    int
		events []cloud.Event
	}
	watchEndedMsg struct{ gen int }
	statusMsg     struct {
		text string
		err  bool
	}
)

func (m *Model) Init() tea.Cmd {
	return tea.Batch(tea.RequestBackgroundColor, m.startWatch(), m.listenInbox())
}

// startWatch (re)starts the stream of the cloud's events.
func (m *Model) startWatch() tea.Cmd {
	if m.stopWatch != nil {
		m.stopWatch()
	}
	m.gen++
	gen, cl, every := m.gen, m.cl, m.opts.Interval
	ch := make(chan cloud.Event, 4096)
	stop := make(chan struct{})
	m.events = ch
	m.stopWatch = sync.OnceFunc(func() { close(stop) })
	start := m.run(func(ctx context.Context) tea.Msg {
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-stop:
			case <-wctx.Done():
			}
			cancel()
		}()
		go func() {
			defer close(ch)
			_ = cl.Watch(wctx, every, func(ev cloud.Event) {
				select {
				case ch <- ev:
				case <-wctx.Done():
				}
			})
		}()
		return nil
	})
	return tea.Batch(start, nextEvents(gen, ch))
}

// nextEvents waits for the next events and takes every one already
// waiting with it, so 2,000 VMs arriving at once are one update.
func nextEvents(gen int, ch <-chan cloud.Event) tea.Cmd {
	return func() tea.Msg {
		ev, ok := <-ch
		if !ok {
			return watchEndedMsg{gen}
		}
		batch := []cloud.Event{ev}
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					return eventsMsg{gen, batch}
				}
				batch = append(batch, ev)
			default:
				return eventsMsg{gen, batch}
			}
		}
	}
}

// inboxMsg is whatever a task sent: steps, progress, questions, results.
type inboxMsg struct{ msg tea.Msg }

// listenInbox waits for the next message from the tasks; Update re-arms
// it after each one.
func (m *Model) listenInbox() tea.Cmd {
	ch := m.inbox
	return func() tea.Msg { return inboxMsg{<-ch} }
}

// applyEvents takes a batch into the store and rebuilds what changed.
func (m *Model) applyEvents(evs []cloud.Event) {
	for _, ev := range evs {
		ch := m.data.apply(ev)
		for p := range ch {
			m.dirty[p] = m.dirty[p] || ch[p]
		}
	}
	m.rebuild()
}

func (m *Model) rebuild() {
	for p := range paneCount {
		if !m.dirty[p] {
			continue
		}
		m.dirty[p] = false
		switch p {
		case paneMachines:
			m.tables[p].SetRows(m.data.machineRows())
		case paneNetworks:
			m.tables[p].SetRows(m.data.networkRows())
		case paneVMs:
			m.tables[p].SetRows(m.data.vmRows())
		}
	}
}

func (m *Model) resize(w, h int) {
	m.width, m.height = w, h
	m.help.SetWidth(w)
	for _, t := range m.tables {
		t.SetSize(w, max(h-5, 2))
	}
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
		return m, nextEvents(msg.gen, m.events)
	case watchEndedMsg:
		return m, nil
	case statusMsg:
		m.setStatus(msg.text, msg.err)
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
	case taskDoneMsg:
		return m, m.taskDone(msg)
	case consoleDoneMsg:
		if msg.err != nil {
			m.setStatus(fmt.Sprintf("console of %s: %v", msg.vm, msg.err), true)
		} else {
			m.setStatus("detached from "+msg.vm, false)
		}
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
	t := m.tables[m.focus]
	switch {
	case key.Matches(msg, k.Escape):
		if m.filters[m.focus] != "" {
			m.filters[m.focus] = ""
			t.SetFilter("")
		}
		m.setStatus("", false)
	case key.Matches(msg, k.Up):
		t.Move(-1)
	case key.Matches(msg, k.Down):
		t.Move(1)
	case key.Matches(msg, k.PageUp):
		t.Move(-t.Page())
	case key.Matches(msg, k.PageDown):
		t.Move(t.Page())
	case key.Matches(msg, k.Top):
		t.Top()
	case key.Matches(msg, k.Bottom):
		t.Bottom()
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
	return nil
}

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
	case key.Matches(msg, k.Start, k.Stop, k.Reboot):
		return msg.String() + ": starts, stops and reboots are for VMs; press 3 for the VMs"
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
		ks = []key.Binding{add("add machine"), k.Remove}
	case paneNetworks:
		ks = []key.Binding{add("new network"), k.Remove}
	case paneVMs:
		ks = []key.Binding{add("new VM"), k.Console, k.Start, k.Stop, k.Reboot, k.Remove}
	}
	return append(ks, k.NextTab, k.Filter, k.Help, k.Quit)
}

// ShortHelp and FullHelp make the model a help.KeyMap.
func (m *Model) ShortHelp() []key.Binding { return m.paneKeys() }

func (m *Model) FullHelp() [][]key.Binding {
	k := m.keys
	return [][]key.Binding{
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom},
		{k.NextTab, k.PrevTab, k.Machines, k.Networks, k.VMs, k.Filter},
		{k.Add, k.Remove, k.Start, k.Stop, k.Reboot, k.Console},
		{k.Log, k.Help, k.Escape, k.Quit},
	}
}

func (m *Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	v.WindowTitle = "butter"
	return v
}

// render draws the whole screen: the dashboard (or the welcome) with at
// most one modal over it.
func (m *Model) render() string {
	var base string
	if m.welcoming() {
		base = m.welcomeView()
	} else {
		base = m.dashboardView()
	}
	var modal string
	switch {
	case m.form != nil:
		modal = m.form.view(m.st)
	case m.showHelp:
		modal = m.helpView()
	case m.showLog:
		modal = m.logView()
	case m.shown != nil:
		modal = m.taskView(m.shown)
	}
	if modal == "" {
		return base
	}
	return overlay(base, m.st.modal.Render(modal), m.width, m.height)
}

// overlay centres box over base.
func overlay(base, box string, w, h int) string {
	bw, bh := lipgloss.Width(box), lipgloss.Height(box)
	x, y := max(0, (w-bw)/2), max(0, (h-bh)/2)
	c := lipgloss.NewCanvas(w, h)
	c.Compose(lipgloss.NewCompositor(lipgloss.NewLayer(base), lipgloss.NewLayer(box).X(x).Y(y).Z(1)))
	return c.Render()
}

func (m *Model) header() string {
	machines, online, degraded, offline, vms, running := m.data.summary()
	parts := []string{m.st.title.Render("butter")}
	if m.data.inv != nil {
		s := fmt.Sprintf("%d machines", machines)
		var sub []string
		if online > 0 {
			sub = append(sub, m.st.ok.Render(fmt.Sprintf("%d online", online)))
		}
		if degraded > 0 {
			sub = append(sub, m.st.warn.Render(fmt.Sprintf("%d degraded", degraded)))
		}
		if offline > 0 {
			sub = append(sub, m.st.bad.Render(fmt.Sprintf("%d offline", offline)))
		}
		if len(sub) > 0 {
			s += " (" + strings.Join(sub, ", ") + ")"
		}
		parts = append(parts, s, fmt.Sprintf("%d networks", len(m.data.inv.Networks)),
			fmt.Sprintf("%d VMs (%d running)", vms, running))
	} else {
		parts = append(parts, m.st.dim.Render("loading "+m.opts.Inventory+"…"))
	}
	if n := m.runningTasks(); n > 0 {
		parts = append(parts, m.st.info.Render(fmt.Sprintf("%d running", n)))
	}
	return pad(" "+strings.Join(parts, m.st.dim.Render(" · ")), m.width)
}

func (m *Model) tabs() string {
	var b strings.Builder
	b.WriteByte(' ')
	for p := range paneCount {
		label := fmt.Sprintf("%d %s (%d)", p+1, p, m.tables[p].Len())
		if p == m.focus {
			label = "▸" + label
		}
		if m.filters[p] != "" {
			label += " /" + m.filters[p]
		}
		if p == m.focus {
			b.WriteString(m.st.tabOn.Render(label))
		} else {
			b.WriteString(m.st.tabOff.Render(label))
		}
		if p < paneCount-1 {
			b.WriteString(m.st.dim.Render(" │ "))
		}
	}
	return pad(b.String(), m.width)
}

func (m *Model) dashboardView() string {
	t := m.tables[m.focus]
	lines := []string{m.header(), m.tabs(), t.View(m.st, true)}
	detail := ""
	if r, ok := t.Selected(); ok {
		detail = r.detail
	}
	if m.data.invErr != nil {
		lines = append(lines, m.st.errBox.Render(pad(" inventory: "+oneLine(m.data.invErr.Error()), m.width)))
	} else {
		lines = append(lines, m.st.dim.Render(pad(" "+detail, m.width)))
	}
	lines = append(lines, m.statusLine(), m.footer())
	return strings.Join(lines, "\n")
}

func (m *Model) statusLine() string {
	if m.status == "" {
		return strings.Repeat(" ", m.width)
	}
	if m.statusErr {
		return m.st.errBox.Render(pad(" ✗ "+oneLine(m.status), m.width))
	}
	return m.st.info.Render(pad(" "+oneLine(m.status), m.width))
}

func (m *Model) footer() string {
	if m.filtering {
		return pad(" "+m.st.footerKey.Render("/")+m.filters[m.focus]+"█  "+m.st.dim.Render("enter keep · esc clear"), m.width)
	}
	// The pane's own keys first; ? and q always; the rest while they fit.
	ks := m.paneKeys()
	tail := ks[len(ks)-2:]
	ks = ks[:len(ks)-2]
	render := func(b key.Binding) string {
		h := b.Help()
		return m.st.footerKey.Render(h.Key) + " " + m.st.footerDesc.Render(h.Desc)
	}
	end := render(tail[0]) + "  " + render(tail[1])
	room := m.width - 1 - lipgloss.Width(end)
	var parts []string
	for _, b := range ks {
		p := render(b)
		if lipgloss.Width(p)+2 > room {
			break
		}
		parts = append(parts, p)
		room -= lipgloss.Width(p) + 2
	}
	parts = append(parts, end)
	return pad(" "+strings.Join(parts, "  "), m.width)
}

func (m *Model) helpView() string {
	w := min(m.width-6, 90)
	h := m.help
	h.SetWidth(w)
	return m.st.title.Render("Keys") + "\n\n" + h.FullHelpView(m.FullHelp()) + "\n\n" +
		m.st.dim.Render("In a console: Ctrl+] or ~. at the start of a line returns here.") + "\n" +
		m.st.dim.Render("Forms: ↑/↓ choose · space toggles · enter next · shift+tab back · esc cancel") + "\n" +
		m.st.dim.Render("? or esc closes")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func isLinux() bool { return runtime.GOOS == "linux" }
