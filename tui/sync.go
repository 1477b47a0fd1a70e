package tui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// catchUpRetry is how long the dashboard waits before it tries again to
// catch up a machine whose last sync did not.
const catchUpRetry = 30 * time.Second

// catchUp is the dashboard's syncing of one machine.
type catchUp struct {
	running  bool
	failedAt time.Time // when the last sync left it behind
	reached  int       // the generation the last sync that took brought it to
}

// catchUps are the dashboard's syncs, by machine: one at a time per
// machine, and after a failure not again before catchUpRetry.
type catchUps map[string]*catchUp

func (c catchUps) running(name string) bool {
	u := c[name]
	return u != nil && u.running
}

// due tells whether to sync a pending machine now, the cloud being at
// generation gen: none is running for it, the last one did not fail
// lately, and it has not already brought it to gen (the inventory that
// says so may not have been reloaded yet).
func (c catchUps) due(name string, gen int, now time.Time) bool {
	u := c[name]
	if u == nil {
		return true
	}
	return !u.running && u.reached < gen && (u.failedAt.IsZero() || now.Sub(u.failedAt) >= catchUpRetry)
}

func (c catchUps) start(names []string) {
	for _, n := range names {
		if c[n] == nil {
			c[n] = &catchUp{}
		}
		c[n].running = true
	}
}

// syncDoneMsg is how a sync of names went, for the bookkeeping; the
// task's own end says it on the status line. manual: the user asked.
type syncDoneMsg struct {
	names  []string
	manual bool
	out    cloud.Outcome
	err    error
}

// done records how a sync went. A machine it left behind is not tried
// again by itself before catchUpRetry, unless the user's sync found it
// away: the dashboard did not try that one, and tries when it answers.
func (c catchUps) done(s syncDoneMsg, now time.Time) {
	for _, n := range s.names {
		u := c[n]
		if u == nil {
			u = &catchUp{}
			c[n] = u
		}
		u.running = false
		away := slices.ContainsFunc(s.out.Behind, func(b cloud.Behind) bool { return b.Machine == n && b.Away })
		switch {
		case s.err == nil && slices.Contains(s.out.Applied, n):
			u.reached, u.failedAt = s.out.Generation, time.Time{}
		case s.manual && s.err == nil && away:
		default:
			u.failedAt = now
		}
	}
}

func (m *Model) syncDone(msg syncDoneMsg) {
	m.data.catchUp.done(msg, time.Now())
	m.dirty[paneMachines] = true
	m.rebuild()
}

// autoSync starts catching up each pending machine that answers, by
// itself, in the background.
func (m *Model) autoSync() tea.Cmd {
	inv := m.data.inv
	if inv == nil || m.data.invErr != nil {
		return nil
	}
	now := time.Now()
	var cmds []tea.Cmd
	for _, mc := range inv.Machines {
		_, word := m.data.status(mc.Name)
		if inv.Pending(mc) && answering(word) && m.data.catchUp.due(mc.Name, inv.Generation, now) {
			cmds = append(cmds, m.catchUpMachine(mc.Name))
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	m.rebuild()
	return tea.Batch(cmds...)
}

// catchUpMachine syncs one machine that came back.
func (m *Model) catchUpMachine(name string) tea.Cmd {
	m.data.catchUp.start([]string{name})
	m.dirty[paneMachines] = true
	cl := m.cl
	return m.startTask("catch up "+name, taskBackground, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
		out, err := cl.Sync(ctx, []string{name}, steps)
		done := syncDoneMsg{names: []string{name}, out: out, err: err}
		again := fmt.Sprintf("; trying again in %.0fs", catchUpRetry.Seconds())
		switch {
		case err != nil:
			return "", done, fmt.Errorf("%s is back but did not catch up: %w%s", name, err, again)
		case slices.Contains(out.Applied, name):
			return fmt.Sprintf("%s is back: caught up to generation %d", name, out.Generation), done, nil
		case len(out.Behind) > 0:
			return "", done, fmt.Errorf("%s is back but did not catch up: %w%s", name, out.Behind[0].Err, again)
		}
		return "", done, fmt.Errorf("%s did not catch up: it has no configuration to take yet%s", name, again)
	})
}

// syncNow catches up every pending machine that is not being caught up
// already, as `butter sync` does.
func (m *Model) syncNow() tea.Cmd {
	inv := m.data.inv
	if inv == nil {
		return nil
	}
	var names, busy []string
	for _, mc := range inv.Machines {
		switch {
		case !inv.Pending(mc):
		case m.data.catchUp.running(mc.Name):
			busy = append(busy, mc.Name)
		default:
			names = append(names, mc.Name)
		}
	}
	switch {
	case len(names) == 0 && len(busy) > 0:
		m.setStatus("already catching up "+strings.Join(busy, ", "), false)
		return nil
	case len(names) == 0:
		m.setStatus(fmt.Sprintf("every machine is up to date (generation %d)", inv.Generation), false)
		return nil
	}
	m.data.catchUp.start(names)
	m.dirty[paneMachines] = true
	m.rebuild()
	cl := m.cl
	return m.startTask("sync "+strings.Join(names, ", "), taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
		out, err := cl.Sync(ctx, names, steps)
		done := syncDoneMsg{names: names, manual: true, out: out, err: err}
		if err != nil {
			return "", done, err
		}
		text := "no machine caught up"
		if len(out.Applied) > 0 {
			text = fmt.Sprintf("up to date at generation %d: %s", out.Generation, strings.Join(out.Applied, ", "))
		}
		if failed, _ := out.Split(); len(failed) > 0 {
			lines := []string{text}
			for _, b := range out.Behind {
				if !b.Away {
					lines = append(lines, b.String())
				}
			}
			return "", done, errors.New(strings.Join(lines, "\n"))
		}
		return text + out.Note(), done, nil
	})
}
