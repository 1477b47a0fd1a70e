package tui

import (
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		avail int
		want  []int
		got   []int
	}{
		// Room for all: each its own, the rest to the last.
		{23, []int{4, 3, 5}, []int{4, 3, 16}},
		// Too little: the small ones are met, the big ones share.
		{23, []int{101, 2, 2001}, []int{10, 3, 10}},
		{43, []int{101, 2, 2001}, []int{20, 3, 20}},
		// Never under three lines (a header and two rows).
		{9, []int{1, 1, 1}, []int{3, 3, 3}},
		{52, []int{4, 5}, []int{4, 48}},
	} {
		got := share(tc.avail, tc.want)
		if !slices.Equal(got, tc.got) {
			t.Errorf("share(%d, %v) = %v, want %v", tc.avail, tc.want, got, tc.got)
		}
	}
}

// TestStackedOrTabs: from 100×30 every pane is on the screen; one column
// or one line less and the tabs come back.
func TestStackedOrTabs(t *testing.T) {
	for _, tc := range []struct {
		w, h    int
		stacked bool
	}{
		{100, 30, true}, {99, 30, false}, {100, 29, false}, {80, 24, false}, {120, 40, true}, {200, 60, true},
	} {
		m := fixture(t, tc.w, tc.h, true)
		screen := ansi.Strip(m.render())
		all := strings.Contains(screen, "web2") && strings.Contains(screen, "green") && strings.Contains(screen, "charlie  offline")
		if m.arr.stacked != tc.stacked || all != tc.stacked {
			t.Errorf("%d×%d: stacked %v, every pane's rows shown %v; want %v:\n%s", tc.w, tc.h, m.arr.stacked, all, tc.stacked, screen)
		}
	}
}

// TestFlowStackedFocusAndScroll: at 100×30, Tab and shift+Tab move the
// focus between the stacked panes, each pane keeps its own selection, and
// the VMs pane, with more rows than fit, scrolls on its own while the
// machines stay where they were.
func TestFlowStackedFocusAndScroll(t *testing.T) {
	fc, path := newFakeCluster(t, 3, 20)
	m, tm := flowModel(t, fc, path)
	waitFor(t, tm, m, "60 VMs listed", func(m *Model) bool { return m.data.complete() && m.tables[paneVMs].Len() == 60 })
	waitScreen(t, tm, m, "▸1 Machines (3)")
	focused := func(p pane) func(*Model) bool { return func(m *Model) bool { return m.focus == p } }

	tm.Send(press("tab"))
	waitFor(t, tm, m, "focus on the networks", focused(paneNetworks))
	waitScreen(t, tm, m, "▸2 Networks (1)")
	tm.Send(press("tab"))
	waitFor(t, tm, m, "focus on the VMs", focused(paneVMs))
	tm.Send(press("shift+tab"))
	waitFor(t, tm, m, "focus back on the networks", focused(paneNetworks))
	tm.Send(press("tab"))
	waitFor(t, tm, m, "focus on the VMs again", focused(paneVMs))

	// The VMs pane has 60 rows and room for far fewer: G scrolls it to the
	// last; its first row leaves the screen, the machines' rows stay.
	tm.Send(press("G"))
	waitFor(t, tm, m, "the last VM selected and on the screen", func(m *Model) bool {
		s := ansi.Strip(m.render())
		return m.tables[paneVMs].SelectedID() == "node003-vm20" && strings.Contains(s, "▌node003-vm20") &&
			!strings.Contains(s, "node001-vm01") && strings.Contains(s, "node001  online") && strings.Contains(s, "▸3 VMs (60) · 46–60")
	})
	// Two pages up: the pane scrolls back, neither at its top nor its end.
	tm.Send(press("pgup"))
	tm.Send(press("pgup"))
	waitFor(t, tm, m, "two pages up in the VMs pane", func(m *Model) bool {
		t := m.tables[paneVMs]
		return t.SelectedID() != "node003-vm20" && t.top > 0 && t.top+t.height-1 < t.Len()
	})
	tm.Send(press("G"))

	// Each pane keeps its selection: down on the machines, back to the VMs.
	tm.Send(press("tab"))
	waitFor(t, tm, m, "focus wraps to the machines", focused(paneMachines))
	tm.Send(press("down"))
	waitFor(t, tm, m, "node002 selected", func(m *Model) bool { return m.tables[paneMachines].SelectedID() == "node002" })
	tm.Send(press("shift+tab"))
	waitFor(t, tm, m, "back on the VMs, still at the last", func(m *Model) bool {
		s := ansi.Strip(m.render())
		return m.focus == paneVMs && m.tables[paneVMs].SelectedID() == "node003-vm20" &&
			strings.Contains(s, "▌node003-vm20") && strings.Contains(s, "›node002")
	})

	// Smaller than 100×30: the tabs of before, one pane at a time.
	tm.Send(tea.WindowSizeMsg{Width: 90, Height: 30})
	waitFor(t, tm, m, "tabs at 90×30", func(m *Model) bool {
		s := ansi.Strip(m.render())
		return !m.arr.stacked && strings.Contains(s, "▸3 VMs (60)") && !strings.Contains(s, "node001  online")
	})
	tm.Send(press("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}
