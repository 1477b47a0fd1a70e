package tui

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"charm.land/lipgloss/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

// linksView is the topology of the network the links modal shows: per
// pair of members, direct or through a relay, the last handshake, the
// bytes each way, and why a broken link is, from what the helpers last
// said (the same reading as `butter network show`).
func (m *Model) linksView() string {
	w := max(20, min(m.width-6, 100))
	title := m.st.title.Render("Links of network " + m.links)
	if m.data.inv == nil {
		return title + "\n\n" + m.st.dim.Render("loading…")
	}
	n, found := m.data.inv.Network(m.links)
	if !found {
		return title + "\n\n" + m.st.errBox.Render(pad("no network "+m.links+" (removed?)", w)) + "\n\n" + m.st.dim.Render("esc closes")
	}
	links := m.data.links(n.Machines)
	if len(links) == 0 {
		return title + "\n\n" + m.st.dim.Render("one machine: no links") + "\n\n" + m.st.dim.Render("esc closes")
	}
	// The broken first: with many pairs, they are the ones on screen.
	slices.SortStableFunc(links, func(a, b cloud.LinkStatus) int {
		return cmp.Compare(linkRank(a.State), linkRank(b.State))
	})
	t := newTable(column{title: "LINK", max: 30}, column{title: "PATH", max: 16}, column{title: "HANDSHAKE", max: 12},
		column{title: "RTT", max: 10, right: true}, column{title: "A→B", max: 10, right: true},
		column{title: "B→A", max: 10, right: true}, column{title: "STATE", max: 8})
	rows := make([]row, 0, len(links))
	ok := 0
	for _, l := range links {
		rows = append(rows, row{id: l.A + "–" + l.B, cells: []cell{
			{text: l.A + " – " + l.B}, {text: l.Path()}, {text: l.Handshake()}, {text: l.RTT()},
			{text: cloud.Bytes(l.BytesAB)}, {text: cloud.Bytes(l.BytesBA)}, {text: l.State, style: linkStyle(l.State)}}})
		if l.State == cloud.LinkOK {
			ok++
		}
	}
	// The box fits the screen: its border, title, gaps and footer take 7
	// lines; the reasons get at most half of the rest, the table the others.
	room := max(4, m.height-7)
	wrap := lipgloss.NewStyle().Width(w)
	var why []string
	lines, more := 0, 0
	for _, l := range links[:len(links)-ok] {
		text := wrap.Render(m.st.state(linkStyle(l.State)).Render(l.A+" – "+l.B+" "+l.State+": ") + printable.String(l.Why))
		if n := lipgloss.Height(text); lines+n <= room/2 {
			why, lines = append(why, text), lines+n
		} else {
			more++
		}
	}
	if more > 0 {
		why = append(why, m.st.dim.Render(fmt.Sprintf("and %d more: butter network show %s", more, n.Name)))
		lines++
	}
	t.SetRows(rows)
	t.SetSize(w, min(len(rows)+1, max(3, room-lines-1)))
	t.cursor = -1 // no selection: a report
	var b strings.Builder
	b.WriteString(title + "\n\n" + t.View(m.st, false))
	if len(why) > 0 {
		b.WriteString("\n\n" + strings.Join(why, "\n"))
	}
	foot := fmt.Sprintf("%d of %d links ok", ok, len(links))
	if shown := t.height - 1; shown < len(rows) {
		foot += fmt.Sprintf(", %d shown", shown)
	}
	b.WriteString("\n\n" + m.st.dim.Render(foot+" · esc closes"))
	return b.String()
}

// linkRank orders link states: down, then unknown, then ok.
func linkRank(state string) int {
	switch state {
	case cloud.LinkDown:
		return 0
	case cloud.LinkOK:
		return 2
	}
	return 1
}

// linkStyle is the colour word of a link state.
func linkStyle(state string) string {
	switch state {
	case cloud.LinkOK:
		return "ok"
	case cloud.LinkDown:
		return "down"
	}
	return "stale"
}
