package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

// A destructive action's confirmation shows what it would do on the
// machines: the commands of its dry run (the same plan the helpers would
// execute), a few lines of them, the CLI's --dry-run showing all.

// planTimeout bounds working out a plan before the confirmation opens.
const planTimeout = 10 * time.Second

// planLines is how many lines of commands a confirmation shows.
const planLines = 8

// planWorking is the status while a plan is worked out.
const planWorking = "working out what it would change…"

// planMsg brings a dry run's text to the confirmation that waits for it.
type planMsg struct {
	plan string
	open func(plan string) tea.Cmd
}

// withPlan works the dry run out in a command, then opens the
// confirmation with it (open is given its text); cli names the verb
// that shows the whole plan.
func (m *Model) withPlan(cli string, dryRun func(context.Context) (cloud.DryRun, error), open func(plan string) tea.Cmd) tea.Cmd {
	m.setStatus(planWorking, false)
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), planTimeout)
		defer cancel()
		d, err := dryRun(ctx)
		return planMsg{plan: planText(d, err, cli), open: open}
	}
}

// openPlanned opens the confirmation of msg once no other form is open.
func (m *Model) openPlanned(msg planMsg) tea.Cmd {
	if m.form != nil {
		m.queued = append(m.queued, func() tea.Cmd { return m.openPlanned(msg) })
		return nil
	}
	m.setStatus("", false)
	return msg.open(msg.plan)
}

// planText is a dry run in a few lines: per machine, its commands (the
// first line of each), then how many more there are.
func planText(d cloud.DryRun, err error, cli string) string {
	if err != nil {
		return "What it would do on the machines is unknown: " + oneLine(err.Error())
	}
	var lines []string
	for _, md := range d.Machines {
		switch {
		case md.Away:
			lines = append(lines, md.Machine+": away; catches up when back")
		case md.Err != nil:
			lines = append(lines, md.Machine+": no plan: "+oneLine(md.Err.Error()))
		}
		for _, st := range md.Steps {
			for _, c := range st.Commands {
				first, _, _ := strings.Cut(c, "\n")
				if !strings.HasPrefix(first, "#") {
					lines = append(lines, md.Machine+": "+first)
				}
			}
		}
	}
	if len(lines) == 0 {
		return "It changes nothing on the machines."
	}
	var b strings.Builder
	b.WriteString("On the machines:\n")
	for i, l := range lines {
		if i == planLines {
			fmt.Fprintf(&b, "… and %d more (`%s --dry-run` shows them all)", len(lines)-planLines, cli)
			break
		}
		b.WriteString(printable.String(l) + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
