// Package tui is butter's dashboard: machines, networks and VMs live from
// the helpers' events, forms with arrow-key menus for every change, and a
// VM's console one keystroke away. It calls the core (package cloud) and
// never talks SSH itself.
package tui

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
)

// Ask puts a yes/no question to the person at the dashboard and waits for
// the answer (or ctx). detail is shown under the question.
type Ask func(ctx context.Context, question, detail string) (bool, error)

// Options configure the dashboard.
type Options struct {
	// Inventory is the inventory file's path.
	Inventory string
	// Connector makes the connector the cloud at inventory reaches its
	// machines with; ask lets it put questions (such as installing missing
	// prerequisites) to the user. Nil: cloud.SSH, asking before it
	// installs anything.
	Connector func(inventory string, ask Ask) cloud.Connector
	// Images, when set, adds image choices to the create-VM form for the
	// cloud at inventory (a lab's tiny guest, say).
	Images func(inventory string) []Image
	// StartLab, when set, is offered on the welcome screen: it starts
	// simulated machines on this computer (`butter lab up`) and returns
	// the inventory that lists them, which the dashboard then opens.
	StartLab func(ctx context.Context, steps func(cloud.Step)) (inventory string, err error)
	// SSHDir is where the add-machine form looks for keys (default ~/.ssh).
	SSHDir string
	// Interval is how often machines' health is refreshed
	// (default cloud.DefaultWatchInterval).
	Interval time.Duration
	Log      *slog.Logger
	// Input and Output default to the terminal.
	Input  io.Reader
	Output io.Writer
}

// Image is a choice in the create-VM form: a label and the image source
// cloud.NewVM takes.
type Image struct {
	Label, Source string
}

// Run shows the dashboard until the user quits or ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.Inventory == "" {
		return errors.New("dashboard: no inventory file")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := New(o)
	defer m.Close()
	opts := []tea.ProgramOption{tea.WithContext(ctx)}
	if o.Input != nil {
		opts = append(opts, tea.WithInput(o.Input))
	}
	if o.Output != nil {
		opts = append(opts, tea.WithOutput(o.Output))
	}
	m.run = runner(ctx)
	p := tea.NewProgram(m, opts...)
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// runner makes commands that do I/O under the program's context: the only
// way the model reaches a context, so none is kept in a struct.
type runnerFunc func(fn func(ctx context.Context) tea.Msg) tea.Cmd

func runner(ctx context.Context) runnerFunc {
	return func(fn func(ctx context.Context) tea.Msg) tea.Cmd {
		return func() tea.Msg { return fn(ctx) }
	}
}

func sshDir(o Options) string {
	if o.SSHDir != "" {
		return o.SSHDir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return home + "/.ssh"
}
