package tui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/butter-cloud/butter/internal/printable"
)

// View is the frame bubbletea draws: render, full-screen.
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
	case m.links != "":
		modal = m.linksView()
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
	c := m.data.summary()
	parts := []string{m.st.title.Render("butter")}
	if m.data.inv != nil {
		s := fmt.Sprintf("%d machines", c.machines)
		var sub []string
		for _, n := range []struct {
			n    int
			word string
			st   lipgloss.Style
		}{
			{c.online, "online", m.st.ok}, {c.degraded, "degraded", m.st.warn},
			{c.offline, "offline", m.st.bad}, {c.pending, "pending", m.st.warn},
		} {
			if n.n > 0 {
				sub = append(sub, n.st.Render(fmt.Sprintf("%d %s", n.n, n.word)))
			}
		}
		if len(sub) > 0 {
			s += " (" + strings.Join(sub, ", ") + ")"
		}
		parts = append(parts, s, fmt.Sprintf("%d networks", len(m.data.inv.Networks)),
			fmt.Sprintf("%d VMs (%d running)", c.vms, c.running))
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
	lines := []string{m.header()}
	if m.arr.stacked {
		lines = append(lines, m.stackedView())
	} else {
		lines = append(lines, m.tabs(), t.View(m.st, true))
	}
	detail := ""
	if r, ok := t.Selected(); ok {
		detail = printable.String(r.detail)
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

// ShortHelp and FullHelp make the model a help.KeyMap.
func (m *Model) ShortHelp() []key.Binding { return m.paneKeys() }

func (m *Model) FullHelp() [][]key.Binding {
	k := m.keys
	return [][]key.Binding{
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom},
		{k.NextTab, k.PrevTab, k.Machines, k.Networks, k.VMs, k.Filter},
		{k.Add, k.Remove, k.RotateKey, k.Sync, k.Start, k.Stop, k.Reboot, k.Console, k.SSH, k.Links},
		{k.Log, k.Help, k.Escape, k.Quit},
	}
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
	return printable.String(strings.Join(strings.Fields(s), " "))
}
