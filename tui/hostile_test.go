package tui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// What machines answer (VM names, states, errors) is drawn with its
// control characters shown escaped, so it cannot redraw the dashboard.
func TestRemoteTextEscaped(t *testing.T) {
	r := row{cells: []cell{{text: "web\x1b[2J\x1b[H"}, {text: "running\x07"}}}
	for j := range r.cells {
		if got := cellText(r, j); strings.ContainsAny(got, "\x1b\x07") {
			t.Errorf("cell %d drawn as %q", j, got)
		}
	}
	if got := oneLine("failed:\x1b]52;c;ZXZpbA==\x07 \r\n  again"); strings.ContainsAny(got, "\x1b\x07\r\n") {
		t.Errorf("status drawn as %q", got)
	}
}

// hostileConnector is a fake cluster in which the machine at addr answers
// every request with what answer writes: a compromised machine's helper.
type hostileConnector struct {
	*fakeCluster
	addr    string
	answer  func(w io.Writer, id string) error
	written atomic.Int64 // bytes the hostile machine got out
}

func (h *hostileConnector) Connect(ctx context.Context, m inventory.Machine, trust cloud.Trust, steps func(cloud.Step)) (cloud.Link, error) {
	if m.Address != h.addr {
		return h.fakeCluster.Connect(ctx, m, trust, steps)
	}
	a, b := net.Pipe()
	go h.serve(b)
	return &fakeLink{client: helperapi.NewClient(h.ctx, a), addr: m.Address, side: h.side(m.Name)}, nil
}

// serve reads requests and answers each; it ends when the operator closes
// the connection (a write or a read fails).
func (h *hostileConnector) serve(conn net.Conn) {
	defer conn.Close()
	dec := json.NewDecoder(conn)
	w := countingWriter{conn, &h.written}
	for {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		if len(req.ID) == 0 {
			continue // a notification
		}
		if err := h.answer(w, string(req.ID)); err != nil {
			return
		}
	}
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// endless writes chunk forever, after head.
func endless(head, chunk string) func(io.Writer, string) error {
	return func(w io.Writer, id string) error {
		if _, err := io.WriteString(w, fmt.Sprintf(head, id)); err != nil {
			return err
		}
		c := []byte(chunk)
		for {
			if _, err := w.Write(c); err != nil {
				return err
			}
		}
	}
}

// TestDashboardAgainstHostileMachine: one machine of three answers every
// call with a never-ending or oversized message, or an escape-laden error.
// The dashboard keeps taking keys and drawing (each key's effect is on
// the screen when Update returns), the other machines come online, the
// hostile one is not shown online, and no escape sequence it sent reaches
// the screen. The operator's memory is printed: bounded by the message
// limit, not by what the machine sends.
func TestDashboardAgainstHostileMachine(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	tests := []struct {
		name   string
		answer func(io.Writer, string) error
	}{
		{"never-ending string", endless(`{"jsonrpc":"2.0","id":%s,"result":{"uplink":"`, big)},
		{"never-ending whitespace", endless(`%.0s`, strings.Repeat(" ", 1<<20))},
		{"oversized answer", func(w io.Writer, id string) error {
			_, err := fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"uplink":"%s"}}`+"\n", id, strings.Repeat(big, 20))
			return err
		}},
		{"never-ending trickle", func(w io.Writer, id string) error {
			if _, err := fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"uplink":"`, id); err != nil {
				return err
			}
			for {
				if _, err := io.WriteString(w, "a"); err != nil {
					return err
				}
				time.Sleep(time.Millisecond)
			}
		}},
		{"escape-laden error", func(w io.Writer, id string) error {
			_, err := fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":1,"message":"\u001b]52;c;ZXZpbA==\u0007\u001b[2J\u001b[Hpwned"}}`+"\n", id)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc, path := newFakeCluster(t, 3, 1)
			h := &hostileConnector{fakeCluster: fc, addr: fc.addressOf("node002"), answer: tt.answer}
			var before runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)

			m := New(Options{Inventory: path, SSHDir: t.TempDir(), Interval: 100 * time.Millisecond,
				Connector: func(string, Ask) cloud.Connector { return h }})
			d := newDriver(t, m)
			d.send(tea.WindowSizeMsg{Width: 120, Height: 30})
			d.until("the honest machines online", 20*time.Second, func(m *Model) bool {
				_, s1 := m.data.status("node001")
				_, s3 := m.data.status("node003")
				return s1 == cloud.StatusOnline && s3 == cloud.StatusOnline
			})
			// Keys act at once while the hostile machine keeps sending: each
			// pane key moves the focus before Update returns.
			for round := range 3 {
				for _, k := range []struct {
					key  string
					want pane
				}{{"2", paneNetworks}, {"3", paneVMs}, {"1", paneMachines}} {
					d.send(press(k.key))
					if d.m.focus != k.want {
						t.Fatalf("round %d: key %s left the focus on pane %d", round, k.key, d.m.focus)
					}
					screen := d.m.render()
					if strings.Contains(screen, "\x1b]52") || strings.Contains(screen, "\x07") || strings.Contains(screen, "\x1b[2J") {
						t.Fatalf("the machine's escape sequences reached the screen:\n%q", screen)
					}
				}
				// Let the dashboard's refreshes run against the machine.
				deadline := time.After(300 * time.Millisecond)
			drain:
				for {
					select {
					case msg := <-d.msgs:
						d.send(msg)
					case <-deadline:
						break drain
					}
				}
			}
			if _, s := d.m.data.status("node002"); s == cloud.StatusOnline {
				t.Errorf("the hostile machine is shown online")
			}
			var after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&after)
			t.Logf("the machine sent %d MiB; the operator allocated %d MiB in all, its heap grew by %d MiB (message limit %d MiB)",
				h.written.Load()>>20, (after.TotalAlloc-before.TotalAlloc)>>20, (int64(after.HeapInuse)-int64(before.HeapInuse))>>20, helperapi.MaxMessageSize>>20)
			if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 4*helperapi.MaxMessageSize {
				t.Errorf("the operator's heap grew by %d MiB, more than four message limits", grew>>20)
			}
		})
	}
}

// addressOf is the address of the fake machine called name.
func (c *fakeCluster) addressOf(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, s := range c.sides {
		if s.name == name {
			return addr
		}
	}
	panic("no fake machine " + name)
}
