package tui

import (
	"context"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
)

// driver runs a Model's commands the way a program does, without a
// terminal: each command in its own goroutine, its message back into
// Update on the test's goroutine.
type driver struct {
	t    testing.TB
	m    *Model
	msgs chan tea.Msg
}

func newDriver(t testing.TB, m *Model) *driver {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		m.Close()
	})
	m.run = runner(ctx)
	d := &driver{t: t, m: m, msgs: make(chan tea.Msg, 1024)}
	d.exec(m.Init())
	return d
}

func (d *driver) exec(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	go func() {
		if msg := cmd(); msg != nil {
			d.msgs <- msg
		}
	}()
}

// send gives msg to Update and runs what it returns.
func (d *driver) send(msg tea.Msg) {
	if b, ok := msg.(tea.BatchMsg); ok {
		for _, c := range b {
			d.exec(c)
		}
		return
	}
	_, cmd := d.m.Update(msg)
	d.exec(cmd)
}

// until processes messages until ok holds or the time is up.
func (d *driver) until(what string, timeout time.Duration, ok func(*Model) bool) {
	d.t.Helper()
	deadline := time.After(timeout)
	for !ok(d.m) {
		select {
		case msg := <-d.msgs:
			d.send(msg)
		case <-deadline:
			d.t.Fatalf("timed out waiting for %s; screen:\n%s", what, d.m.render())
		}
	}
}

// namedKeys are the keys press knows by name.
var namedKeys = map[string]tea.KeyPressMsg{
	"enter":     {Code: tea.KeyEnter},
	"esc":       {Code: tea.KeyEscape},
	"tab":       {Code: tea.KeyTab},
	"shift+tab": {Code: tea.KeyTab, Mod: tea.ModShift},
	"up":        {Code: tea.KeyUp},
	"down":      {Code: tea.KeyDown},
	"left":      {Code: tea.KeyLeft},
	"right":     {Code: tea.KeyRight},
	"space":     {Code: tea.KeySpace, Text: " "},
	"backspace": {Code: tea.KeyBackspace},
	"ctrl+c":    {Code: 'c', Mod: tea.ModCtrl},
}

// press is the key named s or else s typed, its first character the code.
func press(s string) tea.KeyPressMsg {
	if k, ok := namedKeys[s]; ok {
		return k
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

func TestSmokeDashboard(t *testing.T) {
	fc, path := newFakeCluster(t, 5, 3)
	m := New(Options{Inventory: path, Connector: func(string, Ask) cloud.Connector { return fc }, Interval: 200 * time.Millisecond})
	d := newDriver(t, m)
	d.send(tea.WindowSizeMsg{Width: 100, Height: 30})
	d.until("full dashboard", 5*time.Second, func(m *Model) bool { return m.data.complete() })
	t.Log("\n" + m.render())
	d.send(press("3"))
	t.Log("\n" + m.render())
}
