package tui

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
)

type sshDoneMsg struct {
	vm  string
	err error
}

// sshTimeout bounds asking the VM's machine for its image (its login
// user) before ssh starts.
const sshTimeout = 10 * time.Second

// ssh hands the terminal to the system ssh logged in to the VM, as
// `butter vm ssh` does (this binary's `vm proxy` as its ProxyCommand, the
// VM's host key pinned), and takes it back when ssh ends.
func (m *Model) ssh(vm string) tea.Cmd {
	if r := m.data.vms[vm]; r != nil && r.State != "running" && r.State != "" {
		m.setStatus(fmt.Sprintf("ssh: vm %s is %s; start it first (s)", vm, r.State), true)
		return nil
	}
	cl, inv := m.cl, m.opts.Inventory
	return m.run(func(ctx context.Context) tea.Msg {
		proxy, err := cloud.ProxyCommandLine(inv)
		if err != nil {
			return sshDoneMsg{vm: vm, err: err}
		}
		ctx, cancel := context.WithTimeout(ctx, sshTimeout)
		targets, err := cl.SSHTargets(ctx, []string{vm}, sshTimeout)
		cancel()
		if err != nil {
			return sshDoneMsg{vm: vm, err: err}
		}
		args, err := targets[0].SSHArgs(proxy, nil)
		if err != nil {
			return sshDoneMsg{vm: vm, err: err}
		}
		return tea.ExecProcess(exec.Command("ssh", args...), func(err error) tea.Msg { return sshDoneMsg{vm: vm, err: err} })()
	})
}
