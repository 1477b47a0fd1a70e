package tui

import (
	"context"
	"runtime"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// welcomeItem is a choice on the first-run screen; why, when set, says why
// it cannot be chosen.
type welcomeItem struct {
	label, why string
	do         func(m *Model) tea.Cmd
}

func (m *Model) welcomeItems() []welcomeItem {
	items := []welcomeItem{{label: "Add a machine I can reach over SSH", do: (*Model).openAddMachine}}
	lab := welcomeItem{label: "Try butter on this computer: start a lab (butter lab up)", do: (*Model).startLab}
	switch {
	case !isLinux():
		lab.why = "labs need Linux"
	case m.opts.StartLab == nil:
		lab.why = "run `butter lab up` in a shell, then open butter again"
	}
	items = append(items, lab, welcomeItem{label: "Quit", do: func(*Model) tea.Cmd { return tea.Quit }})
	return items
}

func (m *Model) welcomeKey(msg tea.KeyPressMsg) tea.Cmd {
	items := m.welcomeItems()
	switch {
	case key.Matches(msg, m.keys.Up):
		m.welcome = (m.welcome + len(items) - 1) % len(items)
	case key.Matches(msg, m.keys.Down):
		m.welcome = (m.welcome + 1) % len(items)
	case msg.String() == "enter" || msg.String() == "space":
		it := items[min(m.welcome, len(items)-1)]
		if it.why != "" {
			m.setStatus(it.why, true)
			return nil
		}
		return it.do(m)
	case key.Matches(msg, m.keys.Add):
		return m.openAddMachine()
	}
	return nil
}

func (m *Model) welcomeView() string {
	w := min(m.width-4, 72)
	var b strings.Builder
	b.WriteString(m.st.title.Render("Welcome to butter") + "\n\n")
	b.WriteString(lipgloss.NewStyle().Width(w).Render(
		"butter turns ordinary Linux machines into one private cloud: encrypted private networks "+
			"between them, and VMs on demand. Your cloud has no machines yet.") + "\n\n")
	b.WriteString(lipgloss.NewStyle().Width(w).Render(
		"To add one you need its address and an SSH login (a key in ~/.ssh or your ssh-agent) "+
			"that can use sudo. butter shows you the machine's host key to confirm, installs what is missing "+
			"after asking, and starts its helper.") + "\n\n")
	for i, it := range m.welcomeItems() {
		cursor := "  "
		label := it.label
		style := m.st.bold
		if i == m.welcome {
			cursor = m.st.title.Render("› ")
			style = m.st.title
		}
		line := cursor + style.Render(label)
		if it.why != "" {
			line = cursor + m.st.dim.Render(label) + "\n    " + m.st.dim.Width(w-4).Render("("+it.why+")")
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("\n" + m.st.dim.Render("↑/↓ choose · enter select · ? keys · q quit") + "\n")
	if m.status != "" {
		st := m.st.info
		if m.statusErr {
			st = m.st.errBox
		}
		b.WriteString("\n" + st.Width(w).Render(m.status))
	}
	body := lipgloss.NewStyle().Padding(1, 2).MaxWidth(m.width).MaxHeight(m.height).Render(b.String())
	return lipgloss.Place(m.width, m.height, lipgloss.Center, lipgloss.Center, body)
}

// startLab runs the lead's StartLab and opens the inventory it made.
func (m *Model) startLab() tea.Cmd {
	start := m.opts.StartLab
	return m.startTask("start a lab", taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
		path, err := start(ctx, steps)
		if err != nil {
			return "", nil, err
		}
		return "lab started; its inventory is " + path, labMsg{path: path}, nil
	})
}

// isLinux: labs need Linux, so the welcome offers one only there.
func isLinux() bool { return runtime.GOOS == "linux" }
