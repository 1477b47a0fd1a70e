package cloud

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/butter-cloud/butter/remote"
)

// The system ssh reaches a VM through `butter vm proxy NAME` as its
// ProxyCommand, and knows the VM's host key from the VMs' known_hosts
// under the VM's name (HostKeyAlias), with strict checking: no prompt, no
// trust on first use. The same options serve `vm ssh` (as -o arguments)
// and `vm ssh-config` (as Host blocks for ssh -F, scp, rsync, VS Code and
// Ansible).

// sshOption is one ssh_config keyword and its value, written as ssh
// reads it.
type sshOption struct{ key, value string }

// sshOptions are the options that reach t. proxy is the command line
// that runs this butter on this cloud (its absolute path and the
// --inventory in effect); `vm proxy NAME` is added to it.
func (t SSHTarget) sshOptions(proxy []string) ([]sshOption, error) {
	for _, s := range append([]string{t.KnownHosts}, proxy...) {
		if strings.ContainsAny(s, "\"\r\n") {
			return nil, fmt.Errorf("vm %q: %q: a path with a double quote or a line break cannot be written into ssh's configuration; use another folder", t.Name, s)
		}
	}
	if len(proxy) == 0 || t.KnownHosts == "" {
		return nil, fmt.Errorf("vm %q: no proxy command or known_hosts to reach it with", t.Name)
	}
	line := remote.ShellJoin(append(proxy, "vm", "proxy", t.Name)...)
	opts := []sshOption{
		// ssh expands %-tokens in both; a literal % is %%.
		{"ProxyCommand", percent(line)},
		{"UserKnownHostsFile", `"` + percent(t.KnownHosts) + `"`},
		{"GlobalKnownHostsFile", "/dev/null"},
		{"HostKeyAlias", t.Name},
		{"HostKeyAlgorithms", "ssh-ed25519"},
		{"StrictHostKeyChecking", "yes"},
		{"UpdateHostKeys", "no"},
		{"CheckHostIP", "no"},
	}
	if t.User != "" {
		opts = append(opts, sshOption{"User", t.User})
	}
	return opts, nil
}

// ProxyCommandLine is the command line that runs this very binary on the
// inventory at path, for ssh's ProxyCommand: its absolute path and
// --inventory with the inventory's absolute path.
func ProxyCommandLine(inventory string) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find butter's own path for ssh's ProxyCommand: %w", err)
	}
	inv, err := filepath.Abs(inventory)
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", inventory, err)
	}
	return []string{exe, "--inventory", inv}, nil
}

func percent(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// SSHArgs are the system ssh's arguments that reach t and run command
// there (a login shell when there is none); see sshOptions for proxy.
func (t SSHTarget) SSHArgs(proxy, command []string) ([]string, error) {
	opts, err := t.sshOptions(proxy)
	if err != nil {
		return nil, err
	}
	var args []string
	for _, o := range opts {
		args = append(args, "-o", o.key+"="+o.value)
	}
	for _, o := range t.Extra {
		args = append(args, "-o", o)
	}
	// "--" ends ssh's options, so neither the name nor the command is
	// read as one.
	args = append(args, "--", t.Name)
	return append(args, command...), nil
}

// WriteSSHConfig writes one ssh_config Host block per target, for
// `ssh -F FILE NAME` or an Include in ~/.ssh/config; see sshOptions for
// proxy.
func WriteSSHConfig(w io.Writer, targets []SSHTarget, proxy []string) error {
	var b strings.Builder
	for i, t := range targets {
		opts, err := t.sshOptions(proxy)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "# vm %s at %s\nHost %s\n", t.Name, t.Address, t.Name)
		for _, o := range opts {
			fmt.Fprintf(&b, "  %s %s\n", o.key, o.value)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
