package tui

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

var at = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixture is a model fed a fixed cloud by hand (no helpers): three
// machines, one offline, one degraded; two networks; five VMs.
func fixture(t *testing.T, w, h int, dark bool) *Model {
	t.Helper()
	m := New(Options{Inventory: "/nonexistent/inventory.yaml", Connector: func(string, Ask) cloud.Connector { return nil }})
	m.st = newStyles(dark)
	key := func(i byte) string { k := make([]byte, 32); k[0] = i; return b64(k) }
	inv := inventory.New()
	for i, n := range []string{"alpha", "bravo", "charlie"} {
		inv.Machines = append(inv.Machines, inventory.Machine{Name: n, Address: "192.0.2." + string(rune('1'+i)), Port: 22,
			MeshIP: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}), PublicKey: key(byte(i + 1))})
	}
	inv.Networks = []inventory.Network{
		{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Tunnel: "auto", Machines: []string{"alpha", "bravo", "charlie"}},
		{Name: "green", ID: 2, Subnet: netip.MustParsePrefix("10.21.0.0/24"), Tunnel: "vxlan", Machines: []string{"alpha", "bravo"}},
	}
	inv.VMs = []inventory.VM{{Name: "db", Machine: "charlie", Network: "blue", Address: netip.MustParseAddr("10.20.0.13")}}
	peers := func(ages map[string]float64) []helperapi.PeerFacts {
		var ps []helperapi.PeerFacts
		for _, n := range []string{"alpha", "bravo", "charlie"} {
			if a, ok := ages[n]; ok {
				ps = append(ps, helperapi.PeerFacts{Name: n, HandshakeAge: a})
			}
		}
		return ps
	}
	nets := []helperapi.NetworkReport{{Name: "blue", MTU: 1370, Tunnel: "vxlan"}, {Name: "green", MTU: 1370, Tunnel: "vxlan"}}
	evs := []cloud.Event{
		{At: at, Inventory: inv},
		{At: at, Machine: &cloud.MachineStatus{Name: "alpha", Status: "online", HelperVersion: "v0.9.0", MeshIP: "10.99.0.1",
			Facts: helperapi.Facts{Peers: peers(map[string]float64{"bravo": 8, "charlie": 400}), Networks: nets,
				Load: helperapi.Load{CPUs: 8, Load1: 2, MemTotalMiB: 16384, MemAvailableMiB: 4096}}}},
		{At: at, Machine: &cloud.MachineStatus{Name: "bravo", Status: "degraded", HelperVersion: "v0.9.0", MeshIP: "10.99.0.2",
			Problem: "no recent WireGuard handshake with charlie", Facts: helperapi.Facts{Peers: peers(map[string]float64{"alpha": 8, "charlie": -1}), Networks: nets}}},
		{At: at, Machine: &cloud.MachineStatus{Name: "charlie", Status: "offline", MeshIP: "10.99.0.3",
			Problem: "dial tcp 192.0.2.3:22: i/o timeout"}},
		{At: at, VMsOf: "alpha", VMs: []cloud.VMStatus{
			{Name: "web1", Machine: "alpha", Network: "blue", IP: "10.20.0.11", State: "running", CPUs: 2, MemoryMiB: 2048, CPUTime: 10},
			{Name: "cache", Machine: "alpha", Network: "green", IP: "10.21.0.10", State: "shut off", CPUs: 1, MemoryMiB: 512}}},
		{At: at, VMsOf: "bravo", VMs: []cloud.VMStatus{
			{Name: "web2", Machine: "bravo", Network: "blue", IP: "10.20.0.12", State: "running", CPUs: 1, MemoryMiB: 1024, CPUTime: 5}}},
		{At: at.Add(2 * time.Second), VMsOf: "alpha", VMs: []cloud.VMStatus{
			{Name: "web1", Machine: "alpha", Network: "blue", IP: "10.20.0.11", State: "running", CPUs: 2, MemoryMiB: 2048, CPUTime: 11},
			{Name: "cache", Machine: "alpha", Network: "green", IP: "10.21.0.10", State: "shut off", CPUs: 1, MemoryMiB: 512}}},
	}
	m.applyEvents(evs)
	m.resize(w, h)
	return m
}

func TestStoreRows(t *testing.T) {
	m := fixture(t, 80, 24, true)
	want := map[pane][]string{
		paneMachines: {
			"alpha online v0.9.0 10.99.0.1 6m40s ago 25% 75% 2",
			"bravo degraded v0.9.0 10.99.0.2 never — — 1",
			"charlie offline — 10.99.0.3 — — — 0",
		},
		paneNetworks: {
			"blue 10.20.0.0/24 10.20.0.1 off alpha,bravo,charlie 1370 vxlan 1/3 ok",
			"green 10.21.0.0/24 10.21.0.1 off alpha,bravo 1370 vxlan 1/1 ok",
		},
		paneVMs: {
			"cache shut off alpha green 10.21.0.10 — 512M",
			"db unknown charlie blue 10.20.0.13 — —",
			"web1 running alpha blue 10.20.0.11 25% 2G",
			"web2 running bravo blue 10.20.0.12 — 1G",
		},
	}
	for p, rows := range want {
		var got []string
		for _, r := range m.tables[p].all {
			var cells []string
			for _, c := range r.cells {
				cells = append(cells, c.text)
			}
			got = append(got, strings.Join(cells, " "))
		}
		if strings.Join(got, "\n") != strings.Join(rows, "\n") {
			t.Errorf("%s rows:\n%s\nwant:\n%s", p, strings.Join(got, "\n"), strings.Join(rows, "\n"))
		}
	}
	// A pushed event changes one VM, and undefined removes it.
	m.applyEvents([]cloud.Event{{VM: &cloud.VMChange{Machine: "alpha", Name: "cache", Event: "started", State: "running"}}})
	if r := m.data.vms["cache"]; r.State != "running" {
		t.Errorf("cache after a started event: %q", r.State)
	}
	m.applyEvents([]cloud.Event{{VM: &cloud.VMChange{Machine: "alpha", Name: "cache", Event: "undefined"}}})
	if _, ok := m.data.vms["cache"]; ok || m.tables[paneVMs].Len() != 3 {
		t.Errorf("cache is still listed after undefined")
	}
}

func TestUpdateKeys(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  []string
		check func(*Model) string // "" when right
	}{
		{"tab moves to networks", []string{"tab"}, func(m *Model) string { return eq(m.focus, paneNetworks) }},
		{"shift+tab wraps to VMs", []string{"shift+tab"}, func(m *Model) string { return eq(m.focus, paneVMs) }},
		{"3 picks VMs", []string{"3"}, func(m *Model) string { return eq(m.focus, paneVMs) }},
		{"down moves the cursor", []string{"down", "down"}, func(m *Model) string { return eq(m.tables[paneMachines].SelectedID(), "charlie") }},
		{"G goes last, g first", []string{"G", "g"}, func(m *Model) string { return eq(m.tables[paneMachines].SelectedID(), "alpha") }},
		{"filter narrows", []string{"3", "/", "w", "e", "b", "enter"}, func(m *Model) string {
			return eq(m.tables[paneVMs].Len(), 2) + eq(m.filtering, false) + eq(m.filters[paneVMs], "web")
		}},
		{"esc clears the filter", []string{"3", "/", "w", "enter", "esc"}, func(m *Model) string { return eq(m.tables[paneVMs].Len(), 4) }},
		{"filter with no match", []string{"/", "z", "z"}, func(m *Model) string {
			return eq(m.tables[paneMachines].Len(), 0) + contains(m.render(), "nothing matches the filter")
		}},
		{"? shows help, esc hides", []string{"?"}, func(m *Model) string { return eq(m.showHelp, true) + contains(m.render(), "Keys") }},
		{"help closes", []string{"?", "esc"}, func(m *Model) string { return eq(m.showHelp, false) }},
		{"c on machines says why", []string{"c"}, func(m *Model) string {
			return eq(m.statusErr, true) + contains(m.status, "only a VM has one")
		}},
		{"console of a stopped VM says why", []string{"3", "c"}, func(m *Model) string {
			return contains(m.status, "vm cache is shut off; start it first")
		}},
		{"e on machines says why", []string{"e"}, func(m *Model) string {
			return eq(m.statusErr, true) + contains(m.status, "ssh: only a VM can be logged in to")
		}},
		{"ssh to a stopped VM says why", []string{"3", "e"}, func(m *Model) string {
			return contains(m.status, "ssh: vm cache is shut off; start it first")
		}},
		{"d on a VM asks first", []string{"3", "d"}, func(m *Model) string {
			return eq(m.form != nil, true) + contains(m.render(), "Remove VM cache?")
		}},
		{"esc cancels the question", []string{"3", "d", "esc"}, func(m *Model) string { return eq(m.form == nil, true) }},
		{"new network form", []string{"2", "a"}, func(m *Model) string {
			return contains(m.render(), "Create a network") + contains(m.render(), "proposed: a free /24")
		}},
		{"enter on a network shows its links", []string{"2", "enter"}, func(m *Model) string {
			return eq(m.links, "blue") + contains(m.render(), "Links of network blue") +
				contains(m.render(), "direct  8s ago") + contains(m.render(), "bravo – charlie down: no handshake ever: UDP between them is blocked")
		}},
		{"esc closes the links", []string{"2", "enter", "esc"}, func(m *Model) string { return eq(m.links, "") }},
		{"enter on the machines shows no links", []string{"enter"}, func(m *Model) string { return eq(m.links, "") }},
		{"new VM form", []string{"3", "a"}, func(m *Model) string { return contains(m.render(), "Create a VM") }},
		{"add machine form", []string{"a"}, func(m *Model) string { return contains(m.render(), "Add a machine") }},
		{"L shows the log", []string{"L"}, func(m *Model) string { return contains(m.render(), "Operations") }},
		{"d on a machine that does not answer offers to drop it", []string{"G", "d"}, func(m *Model) string {
			return contains(m.render(), "Drop machine charlie from the cloud without touching it?") +
				contains(m.render(), "Its VM is written off: db.")
		}},
		{"d on a machine that answers asks to remove it", []string{"d"}, func(m *Model) string {
			return contains(m.render(), "Remove machine alpha from the cloud?")
		}},
		{"R asks before rotating", []string{"R"}, func(m *Model) string {
			return contains(m.render(), "Give alpha a new WireGuard key?") + contains(m.render(), "pauses for about a handshake")
		}},
		{"R on a machine that does not answer says why", []string{"G", "R"}, func(m *Model) string {
			return eq(m.form == nil, true) + eq(m.statusErr, true) + contains(m.status, "charlie does not answer")
		}},
		{"R on the VMs says why", []string{"3", "R"}, func(m *Model) string { return contains(m.status, "keys are the machines'") }},
		{"S with nothing pending", []string{"S"}, func(m *Model) string {
			return contains(m.status, "every machine is up to date (generation 0)")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fixture(t, 100, 30, true)
			for _, k := range tc.keys {
				update(m, k)
			}
			if msg := tc.check(m); msg != "" {
				t.Errorf("%s\nscreen:\n%s", msg, ansi.Strip(m.render()))
			}
		})
	}
}

// update gives m key k and, when it works a plan out before a
// confirmation (a destructive action), runs that and gives m the plan, as
// the program would.
func update(m *Model, k string) {
	_, cmd := m.Update(press(k))
	if cmd != nil && m.status == planWorking {
		m.Update(cmd())
	}
}

func eq[T comparable](got, want T) string {
	if got != want {
		return "got " + strings.TrimSpace(sprint(got)) + ", want " + sprint(want) + "; "
	}
	return ""
}

func contains(s, sub string) string {
	if !strings.Contains(ansi.Strip(s), sub) {
		return "no " + sub + "; "
	}
	return ""
}

// Golden views at fixed sizes, dark and light.
func TestGoldenViews(t *testing.T) {
	for _, tc := range []struct {
		name string
		w, h int
		dark bool
		keys []string
	}{
		{"machines-80x24-dark", 80, 24, true, nil},
		{"machines-80x24-light", 80, 24, false, nil},
		{"networks-80x24-dark", 80, 24, true, []string{"2"}},
		{"vms-120x30-dark", 120, 30, true, []string{"3", "down", "down"}},
		// From 100×30 the panes are stacked; from 180 columns machines and
		// networks sit side by side.
		{"stacked-100x30-dark", 100, 30, true, []string{"down", "tab"}},
		{"stacked-120x40-dark", 120, 40, true, nil},
		{"stacked-120x40-light", 120, 40, false, nil},
		{"wide-200x60-dark", 200, 60, true, []string{"3", "down"}},
		{"wide-200x60-light", 200, 60, false, []string{"3", "down"}},
		{"help-80x24-dark", 80, 24, true, []string{"?"}},
		{"links-120x40-dark", 120, 40, true, []string{"2", "enter"}},
		{"confirm-80x24-dark", 80, 24, true, []string{"3", "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := fixture(t, tc.w, tc.h, tc.dark)
			for _, k := range tc.keys {
				update(m, k)
			}
			out := m.render()
			checkSize(t, out, tc.w, tc.h)
			golden.RequireEqual(t, out)
		})
	}
}

func TestGoldenWelcome(t *testing.T) {
	m := New(Options{Inventory: "/nonexistent", Connector: func(string, Ask) cloud.Connector { return nil }})
	m.applyEvents([]cloud.Event{{Inventory: inventory.New()}})
	m.resize(80, 24)
	out := m.render()
	checkSize(t, out, 80, 24)
	golden.RequireEqual(t, out)
	m.Update(press("down"))
	m.Update(press("enter"))
	if !isLinux() {
		return
	}
	if !strings.Contains(m.status, "butter lab up") {
		t.Errorf("choosing the lab without StartLab should say how: %q", m.status)
	}
	m.Update(press("up"))
	m.Update(press("enter"))
	if m.form == nil || !strings.Contains(ansi.Strip(m.render()), "Add a machine") {
		t.Errorf("the first choice should open the add-machine form:\n%s", ansi.Strip(m.render()))
	}
}

// checkSize: the frame fills the terminal exactly, no line too long.
func checkSize(t *testing.T, out string, w, h int) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) != h {
		t.Errorf("%d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if n := ansi.StringWidth(l); n > w {
			t.Errorf("line %d is %d wide, want ≤ %d: %q", i, n, w, ansi.Strip(l))
		}
	}
}

func TestResizeKeepsEveryLineInside(t *testing.T) {
	m := fixture(t, 80, 24, true)
	for _, s := range [][2]int{{40, 12}, {200, 60}, {80, 24}, {60, 10}} {
		m.Update(tea.WindowSizeMsg{Width: s[0], Height: s[1]})
		for p := range paneCount {
			m.focus = p
			checkSize(t, m.render(), s[0], s[1])
		}
	}
}

func TestEscaper(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		detach  bool
	}{
		{"ls\r", "ls\r", false},
		{"ls\x1d", "ls", true},
		{"~.", "", true},
		{"a~.", "a~.", false},
		{"a\r~.", "a\r", true},
		{"~~", "~", false},
		{"~x", "~x", false},
	} {
		e := NewEscaper()
		out, detach := e.Filter([]byte(tc.in))
		if string(out) != tc.out || detach != tc.detach {
			t.Errorf("%q: got %q %v, want %q %v", tc.in, out, detach, tc.out, tc.detach)
		}
	}
}

// closedConsole refuses every write, as a console that has gone does.
type closedConsole struct{}

func (closedConsole) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestForwardInput(t *testing.T) {
	for _, tc := range []struct {
		name, in, sent string
		closed         bool
		detached       bool
		err            error
	}{
		{name: "detach", in: "ls\r~.echo no\r", sent: "ls\r", detached: true},
		{name: "Ctrl+]", in: "ls\x1dmore", sent: "ls", detached: true},
		{name: "script ends", in: "uname\r", sent: "uname\r", err: io.EOF},
		{name: "console gone", in: "uname\r", closed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent bytes.Buffer
			var console io.Writer = &sent
			if tc.closed {
				console = closedConsole{}
			}
			detached, err := ForwardInput(console, strings.NewReader(tc.in))
			if detached != tc.detached || err != tc.err || sent.String() != tc.sent {
				t.Errorf("ForwardInput = %v, %v, sent %q; want %v, %v, sent %q", detached, err, sent.String(), tc.detached, tc.err, tc.sent)
			}
		})
	}
}

func TestConsoleSessionDetaches(t *testing.T) {
	inR, inW := io.Pipe()
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 1)
	s := &consoleSession{vm: "web1", detach: cancel}
	s.attach = func(in io.Reader, out io.Writer) error {
		var b bytes.Buffer
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			b.Write(buf[:n])
			if err != nil || ctx.Err() != nil {
				got <- b.String()
				return ctx.Err()
			}
		}
	}
	s.SetStdin(inR)
	s.SetStdout(&out)
	s.SetStderr(io.Discard)
	done := make(chan error)
	go func() { done <- s.Run() }()
	inW.Write([]byte("uname\r"))
	inW.Write([]byte("~."))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("~. did not detach")
	}
	if g := <-got; g != "uname\r" {
		t.Errorf("the console got %q, want the line without the escape", g)
	}
	if !strings.Contains(out.String(), "Ctrl+] or ~.") {
		t.Errorf("no hint on how to leave: %q", out.String())
	}
}

// Flows through a real program (teatest), against fake helpers speaking
// the real protocol.
func TestFlowAddMachineThroughTheForm(t *testing.T) {
	fc, path := newFakeCluster(t, 0, 0)
	fc.add(t, "192.0.2.50", newFakeSide("new", 50))
	m, tm := flowModel(t, fc, path)
	waitScreen(t, tm, m, "Welcome to butter")
	tm.Send(press("enter")) // Add a machine
	waitScreen(t, tm, m, "Add a machine")
	typeSlowly(tm, "web", "enter", "192.0.2.50", "enter",
		"enter", // user
		"enter", // port
		"enter") // key: agent and ~/.ssh/config; the note is not a stop: submit
	waitScreen(t, tm, m, "Trust the machine at 192.0.2.50?")
	tm.Send(press("y"))
	waitScreen(t, tm, m, "machine web added")
	tm.Send(press("enter"))
	waitScreen(t, tm, m, "web")
	tm.Send(press("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	inv, err := inventory.Load(path)
	if err != nil || len(inv.Machines) != 1 || inv.Machines[0].Name != "web" || inv.Machines[0].Address != "192.0.2.50" {
		t.Fatalf("inventory after the form: %+v, %v", inv, err)
	}
	if len(fc.asked) != 1 {
		t.Errorf("the host key was asked about %d times, want once", len(fc.asked))
	}
}

func TestFlowNetworkVMActionsAndOutage(t *testing.T) {
	fc, path := newFakeCluster(t, 3, 2)
	m, tm := flowModel(t, fc, path)
	waitScreen(t, tm, m, "3 online")

	// A network through the form: name, the proposed subnet, all machines.
	tm.Send(press("2"))
	tm.Send(press("a"))
	waitScreen(t, tm, m, "Create a network")
	typeSlowly(tm, "blue", "enter",
		"enter", // the proposed subnet
		"enter", // tunnel auto
		"enter", // egress off
		"space", // un-choose node001
		"enter")
	waitScreen(t, tm, m, "network blue (10.100.0.0/24) is on node002, node003")
	tm.Send(press("esc"))

	// Stop a VM: the helper's pushed event changes the row.
	tm.Send(press("3"))
	tm.Send(press("x"))
	waitFor(t, tm, m, "node001-vm01 shut off", func(m *Model) bool {
		r := m.data.vms["node001-vm01"]
		return r != nil && r.State == "shut off"
	})
	// A machine that stops answering is shown offline; the rest go on.
	fc.sides["192.0.2.2"].down.Store(true)
	waitScreen(t, tm, m, "1 offline")
	tm.Send(press("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}

// typeSlowly types text and presses keys (named as press names them) at
// a person's pace: a form moves to its next field through a command, and
// keys sent before it lands would go to the field before.
func typeSlowly(tm *teatest.TestModel, keys ...string) {
	for _, k := range keys {
		if len([]rune(k)) > 1 && press(k).Text == "" || k == "space" {
			tm.Send(press(k))
		} else {
			tm.Type(k)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// waitScreen waits until the model's screen shows s. It reads the model
// only through a message the program itself handles, so there is no race.
func waitScreen(t *testing.T, tm *teatest.TestModel, m *Model, s string) {
	t.Helper()
	waitFor(t, tm, m, s, func(m *Model) bool { return strings.Contains(ansi.Strip(m.render()), s) })
}

type probeMsg struct {
	fn    func(*Model) bool
	reply chan probeReply
}

type probeReply struct {
	ok     bool
	screen string
}

func waitFor(t *testing.T, tm *teatest.TestModel, m *Model, what string, ok func(*Model) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		reply := make(chan probeReply, 1)
		tm.Send(probeMsg{fn: ok, reply: reply})
		select {
		case r := <-reply:
			if r.ok {
				return
			}
			last = r.screen
		case <-time.After(time.Second):
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; screen:\n%s", what, last)
}

// probed lets a test look at the model from inside the program's loop.
type probed struct{ *Model }

func (p probed) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if pm, ok := msg.(probeMsg); ok {
		pm.reply <- probeReply{ok: pm.fn(p.Model), screen: ansi.Strip(p.Model.render())}
		return p, nil
	}
	_, cmd := p.Model.Update(msg)
	return p, cmd
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func sprint(v any) string { return fmt.Sprint(v) }

// flowModel is a dashboard on the inventory at path with the fake cluster
// fc behind it, running in a teatest program of 100×30 until the test ends.
func flowModel(t *testing.T, fc cloud.Connector, path string) (*Model, *teatest.TestModel) {
	t.Helper()
	m := New(Options{Inventory: path, SSHDir: t.TempDir(), Interval: 200 * time.Millisecond,
		Connector: func(string, Ask) cloud.Connector { return fc }})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m.run = runner(ctx)
	return m, teatest.NewTestModel(t, probed{m}, teatest.WithInitialTermSize(100, 30))
}
