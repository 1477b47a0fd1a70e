package tui

import (
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// The dashboard's two layouts. Below stackMinW×stackMinH it shows one pane
// at a time behind tabs; from there on it stacks the three panes, so the
// machines, networks and VMs are all on the first screen, each with its
// own title, cursor and scroll. From wideMinW columns, machines and
// networks sit side by side and the VMs get the height they free.
const (
	stackMinW, stackMinH = 100, 30
	wideMinW             = 180
	// leastTable is the fewest lines a stacked table gets: its header and
	// two rows, so a cursor can still move through it.
	leastTable = 3
)

// arrangement is how the panes share the screen, decided in arrange.
type arrangement struct {
	stacked, wide bool
}

// arrange sizes every pane for the terminal and the rows each has; it
// runs after a resize and after rows or a filter change.
func (m *Model) arrange() {
	w, h := m.width, m.height
	m.arr = arrangement{stacked: w >= stackMinW && h >= stackMinH}
	if !m.arr.stacked {
		for _, t := range m.tables {
			t.SetSize(w, max(h-5, 2))
		}
		return
	}
	// header, detail, status and footer; one title line per pane row.
	const chrome = 4
	want := func(p pane) int { return 1 + max(1, m.tables[p].Len()) }
	if w >= wideMinW {
		m.arr.wide = true
		lw, rw := leftWidth(w), w-leftWidth(w)-1
		hs := share(h-chrome-2, []int{max(want(paneMachines), want(paneNetworks)), want(paneVMs)})
		m.tables[paneMachines].SetSize(lw, hs[0])
		m.tables[paneNetworks].SetSize(rw, hs[0])
		m.tables[paneVMs].SetSize(w, hs[1])
		return
	}
	hs := share(h-chrome-int(paneCount), []int{want(paneMachines), want(paneNetworks), want(paneVMs)})
	for p := range paneCount {
		m.tables[p].SetSize(w, hs[p])
	}
}

// leftWidth is the machines pane's width beside the networks, the
// separator between them taking one column.
func leftWidth(w int) int { return (w - 1) / 2 }

// share splits avail lines among slots that want as many: the smallest
// wants are met first, the rest share evenly, each gets at least
// leastTable, and room to spare goes to the last slot (the VMs, the list
// that grows).
func share(avail int, want []int) []int {
	got := make([]int, len(want))
	order := make([]int, len(want))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return want[a] - want[b] })
	left := avail
	for k, i := range order {
		fair := left / (len(order) - k)
		got[i] = max(leastTable, min(want[i], fair))
		left -= got[i]
	}
	if left > 0 {
		got[len(got)-1] += left
	}
	return got
}

// paneTitle is a stacked pane's title line, w wide: its number, name,
// count and filter, and a rule; the focused pane's in the accent colour.
func (m *Model) paneTitle(p pane, w int) string {
	t := m.tables[p]
	label := fmt.Sprintf("%d %s (%d)", p+1, p, t.Len())
	if m.filters[p] != "" {
		label += " /" + m.filters[p]
	}
	if body := t.height - 1; t.Len() > body {
		// Scrolled on its own: which rows are on screen.
		label += fmt.Sprintf(" · %d–%d", t.top+1, min(t.top+body, t.Len()))
	}
	st, mark := m.st.tabOff, " "
	if p == m.focus {
		st, mark = m.st.tabOn, "▸"
	}
	text := mark + label + " "
	if n := ansi.StringWidth(text); n < w {
		return st.Render(text + strings.Repeat("─", w-n))
	}
	return pad(st.Render(text), w)
}

// stackedView draws the three panes, each under its title.
func (m *Model) stackedView() string {
	pane := func(p pane, w int) string {
		return m.paneTitle(p, w) + "\n" + m.tables[p].View(m.st, p == m.focus)
	}
	if !m.arr.wide {
		return pane(paneMachines, m.width) + "\n" + pane(paneNetworks, m.width) + "\n" + pane(paneVMs, m.width)
	}
	lw := leftWidth(m.width)
	left := strings.Split(pane(paneMachines, lw), "\n")
	right := strings.Split(pane(paneNetworks, m.width-lw-1), "\n")
	sep := m.st.dim.Render("│")
	var b strings.Builder
	for i := range left {
		b.WriteString(left[i])
		b.WriteString(sep)
		if i < len(right) {
			b.WriteString(right[i])
		}
		b.WriteByte('\n')
	}
	b.WriteString(pane(paneVMs, m.width))
	return b.String()
}
