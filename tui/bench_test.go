package tui

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
)

// BenchmarkDashboard: 100 machines with 20 VMs each, served by fake
// helpers over the real protocol (plumbing.Serve ↔ helperapi.Client on
// in-process pipes). It prints the time to the first full dashboard (every
// machine's status and every VM's state arrived and drawn), the time to
// render one frame, and the memory in use.
//
//	go test -run '^$' -bench Dashboard -benchtime 200x ./tui/
func BenchmarkDashboard(b *testing.B) {
	const machines, vmsPer = 100, 20
	fc, path := newFakeCluster(b, machines, vmsPer)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	start := time.Now()
	m := New(Options{Inventory: path, Connector: func(string, Ask) cloud.Connector { return fc }})
	d := newDriver(b, m)
	d.send(tea.WindowSizeMsg{Width: 160, Height: 50})
	d.until("the full dashboard", 30*time.Second, func(m *Model) bool { return m.data.complete() })
	m.focus = paneVMs
	first := m.render()
	firstFull := time.Since(start)
	if got := m.tables[paneVMs].Len(); got != machines*vmsPer {
		b.Fatalf("VMs pane has %d rows, want %d", got, machines*vmsPer)
	}
	_ = first

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	// A frame: View on the 2,000-VM pane with the cursor moving, as when
	// scrolling.
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		m.tables[m.focus].Move(1)
		_ = m.View()
	}
	b.StopTimer()
	perFrame := b.Elapsed() / time.Duration(max(b.N, 1))

	// And a rebuild after a batch of events (one machine's VMs listed
	// again): what each refresh costs before the next frame.
	rebuildStart := time.Now()
	const rebuilds = 20
	for range rebuilds {
		m.dirty = allPanes
		m.rebuild()
	}
	perRebuild := time.Since(rebuildStart) / rebuilds

	b.ReportMetric(float64(firstFull.Milliseconds()), "ms-first-dashboard")
	b.ReportMetric(float64(perFrame.Microseconds())/1000, "ms/frame")
	b.ReportMetric(float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/(1<<20), "MiB-operator-heap")
	fmt.Printf("dashboard: %d machines × %d VMs over the real protocol (in-process)\n", machines, vmsPer)
	fmt.Printf("  first full dashboard: %v (goal ≤ 1s)\n", firstFull.Round(time.Millisecond))
	fmt.Printf("  one frame (View, 160×50, 2,000-row pane): %.3f ms (goal ≤ 10 ms)\n", float64(perFrame.Microseconds())/1000)
	fmt.Printf("  rebuild of all panes after events: %.3f ms\n", float64(perRebuild.Microseconds())/1000)
	fmt.Printf("  memory: operator heap %.1f MiB (dashboard, cloud, 100 protocol clients); process heap %.1f MiB incl. the fake helpers, sys %.1f MiB\n",
		float64(after.HeapAlloc-min(after.HeapAlloc, before.HeapAlloc))/(1<<20), float64(after.HeapAlloc)/(1<<20), float64(after.Sys)/(1<<20))
	if firstFull > time.Second {
		b.Errorf("first full dashboard took %v, want ≤ 1s", firstFull)
	}
	if perFrame > 10*time.Millisecond {
		b.Errorf("a frame takes %v, want ≤ 10ms", perFrame)
	}
}
