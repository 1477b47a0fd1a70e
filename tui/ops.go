package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/progress"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// task is one long operation: its step log, its transfer's progress and
// its outcome. Results are tagged with the task's id, so they reach it
// whether or not it is on screen.
type task struct {
	id       int
	title    string
	lines    []string
	progress *helperapi.Progress
	running  bool
	result   string
	err      error
	started  time.Time
	ended    time.Time
	kind     taskKind
}

// taskKind is how a task shows itself.
type taskKind int

const (
	// taskShown is an operation the user asked for: its log is on
	// screen at once.
	taskShown taskKind = iota
	// taskQuick is a quick action: on the status line, and a failure
	// shows its whole error.
	taskQuick
	// taskBackground is the dashboard's own doing (catching a machine
	// up): on the status line when it ends, and in the log.
	taskBackground
)

type (
	stepMsg struct {
		task int
		step cloud.Step
	}
	progressMsg struct {
		task int
		p    helperapi.Progress
	}
	taskDoneMsg struct {
		task   int
		result string
		err    error
	}
	inventoryMsg struct {
		inv *inventory.Inventory
		err error
	}
	labMsg struct{ path string }
)

// opFunc does a task's work; steps and progress feed its log.
type opFunc func(ctx context.Context, steps func(cloud.Step), progress func(helperapi.Progress)) (result string, follow tea.Msg, err error)

// startTask runs fn as a new task, shown as kind says.
func (m *Model) startTask(title string, kind taskKind, fn opFunc) tea.Cmd {
	m.seq++
	t := &task{id: m.seq, title: title, running: true, started: time.Now(), kind: kind}
	m.tasks = append(m.tasks, t)
	if len(m.tasks) > 50 {
		m.tasks = m.tasks[len(m.tasks)-50:]
	}
	switch kind {
	case taskShown:
		m.shown = t
	case taskQuick:
		m.setStatus(title+"…", false)
	}
	id, inbox, cl := t.id, m.inbox, m.cl
	return m.run(func(ctx context.Context) tea.Msg {
		send := func(msg tea.Msg) {
			select {
			case inbox <- msg:
			case <-ctx.Done():
			}
		}
		var last time.Time
		result, follow, err := fn(ctx,
			func(s cloud.Step) { send(stepMsg{id, s}) },
			func(p helperapi.Progress) {
				// The UI needs a few updates a second, not every block.
				if time.Since(last) >= 100*time.Millisecond || p.Done == p.Total {
					last = time.Now()
					send(progressMsg{id, p})
				}
			})
		if follow != nil {
			send(follow)
		}
		inv, ierr := cl.Inventory()
		if ierr == nil {
			send(inventoryMsg{inv: inv})
		}
		return taskDoneMsg{task: id, result: result, err: err}
	})
}

func (m *Model) taskByID(id int) *task {
	for _, t := range m.tasks {
		if t.id == id {
			return t
		}
	}
	return nil
}

func (m *Model) taskMsg(msg tea.Msg) {
	switch msg := msg.(type) {
	case stepMsg:
		if t := m.taskByID(msg.task); t != nil {
			line := msg.step.Text
			if msg.step.Machine != "" {
				line = msg.step.Machine + ": " + line
			}
			if msg.step.Err != nil {
				line += ": " + msg.step.Err.Error()
			}
			t.lines = append(t.lines, line)
			if len(t.lines) > 200 {
				t.lines = t.lines[len(t.lines)-200:]
			}
		}
	case progressMsg:
		if t := m.taskByID(msg.task); t != nil {
			p := msg.p
			t.progress = &p
		}
	}
}

func (m *Model) taskDone(msg taskDoneMsg) tea.Cmd {
	t := m.taskByID(msg.task)
	if t == nil {
		return nil
	}
	t.running, t.result, t.err, t.ended = false, msg.result, msg.err, time.Now()
	switch {
	case t.err != nil && t.kind == taskBackground:
		m.setStatus(t.err.Error(), true) // it names its machine
	case t.err != nil:
		m.setStatus(t.title+": "+t.err.Error(), true)
	case t.result != "":
		m.setStatus(t.result, false)
	default:
		m.setStatus(t.title+": done", false)
	}
	if t.kind == taskQuick && t.err != nil && m.shown == nil {
		m.shown = t // a failed quick action shows its whole error
	}
	return nil
}

func (m *Model) runningTasks() int {
	n := 0
	for _, t := range m.tasks {
		if t.running {
			n++
		}
	}
	return n
}

// taskState renders the word (or mark) for t's state: running, failed or
// done.
func (m *Model) taskState(t *task, running, failed, done string) string {
	switch {
	case !t.running && t.err != nil:
		return m.st.bad.Render(failed)
	case !t.running:
		return m.st.ok.Render(done)
	}
	return m.st.info.Render(running)
}

func (m *Model) taskView(t *task) string {
	w := min(m.width-6, 76)
	var b strings.Builder
	state := m.taskState(t, "running", "failed", "done")
	b.WriteString(m.st.title.Render(t.title) + "  " + state + "\n\n")
	room := max(3, m.height-12)
	lines := t.lines
	if len(lines) > room {
		lines = lines[len(lines)-room:]
	}
	for i, l := range lines {
		mark := m.st.ok.Render("✓ ")
		if i == len(lines)-1 && t.running {
			mark = m.st.info.Render("› ")
		}
		b.WriteString(mark + pad(oneLine(l), w-2) + "\n")
	}
	if len(t.lines) == 0 {
		b.WriteString(m.st.dim.Render("starting…") + "\n")
	}
	if p := t.progress; p != nil && t.running {
		b.WriteString("\n" + progressLine(*p, w) + "\n")
	}
	if !t.running {
		b.WriteByte('\n')
		if t.err != nil {
			b.WriteString(m.st.errBox.Width(w).Render("✗ "+t.err.Error()) + "\n")
		} else if t.result != "" {
			b.WriteString(m.st.ok.Width(w).Render(t.result) + "\n")
		}
		b.WriteString("\n" + m.st.dim.Render("enter or esc closes"))
	} else {
		b.WriteString("\n" + m.st.dim.Render("esc: keep it going in the background"))
	}
	return b.String()
}

// progressLine is a transfer's bar with what moves and how much.
func progressLine(p helperapi.Progress, w int) string {
	label := fmt.Sprintf("%s %s ", p.Phase, p.Name)
	if p.Total <= 0 {
		return pad(label+fmt.Sprintf("%d MiB", p.Done>>20), w)
	}
	label = pad(label, min(w/2, 30))
	frac := float64(p.Done) / float64(p.Total)
	bar := progress.New(progress.WithWidth(max(10, w-ansi.StringWidth(label)-14)), progress.WithoutPercentage(), progress.WithDefaultBlend())
	return label + bar.ViewAs(frac) + fmt.Sprintf(" %3.0f%% %dM", frac*100, p.Total>>20)
}

func (m *Model) logView() string {
	w := min(m.width-6, 90)
	var b strings.Builder
	b.WriteString(m.st.title.Render("Operations") + "\n\n")
	if len(m.tasks) == 0 {
		b.WriteString(m.st.dim.Render("nothing yet") + "\n")
	}
	room := max(4, m.height-8)
	var lines []string
	for _, t := range m.tasks {
		state := m.taskState(t, "…", "✗", "✓")
		lines = append(lines, state+" "+m.st.bold.Render(pad(t.title, w-2)))
		if t.err != nil {
			lines = append(lines, m.st.errBox.Render("  "+pad(oneLine(t.err.Error()), w-2)))
		}
		for _, l := range t.lines[max(0, len(t.lines)-3):] {
			lines = append(lines, m.st.dim.Render("  "+pad(oneLine(l), w-2)))
		}
	}
	if len(lines) > room {
		lines = lines[len(lines)-room:]
	}
	b.WriteString(strings.Join(lines, "\n"))
	b.WriteString("\n\n" + m.st.dim.Render("L or esc closes"))
	return b.String()
}

// vmAction starts, stops or reboots a VM (remove asks first).
func (m *Model) vmAction(name, action string) tea.Cmd {
	verb := map[string]string{"start": "starting", "stop": "stopping", "reboot": "rebooting", "remove": "removing"}[action]
	cl := m.cl
	kind := taskQuick
	if action == "remove" {
		kind = taskShown
	}
	return m.startTask(verb+" "+name, kind, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
		res, err := cl.VMAction(ctx, name, action, 30*time.Second)
		if err != nil {
			return "", nil, err
		}
		if res.Forced {
			return fmt.Sprintf("vm %s did not shut down in 30s; it was powered off", name), nil, nil
		}
		return fmt.Sprintf("vm %s: %s done", name, action), nil, nil
	})
}
