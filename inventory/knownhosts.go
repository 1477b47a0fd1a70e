package inventory

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/butter-cloud/butter/helperapi"
)

// KnownHostsPath is the VMs' known_hosts beside the inventory at path
// ("<inventory>.known_hosts"): the public half of each VM's SSH host key,
// one line under the VM's name, for ssh's UserKnownHostsFile with
// HostKeyAlias=NAME. A file of its own, not the machines' known_hosts, so
// a VM's name is never taken for a machine's address, and a cloud's VM
// never for another cloud's of the same name. It holds no secret: the
// private halves are only ever in the VMs' seeds.
func KnownHostsPath(path string) string {
	if real, err := resolve(path); err == nil {
		path = real
	}
	return path + ".known_hosts"
}

// SetVMHostKey records key as VM name's host key, replacing what the
// file had for it; a nil key drops the VM's line. The file is rewritten
// atomically under the inventory's lock: never call it from inside Update.
func SetVMHostKey(ctx context.Context, path, name string, key ssh.PublicKey) error {
	if err := helperapi.CheckName("vm", name); err != nil {
		return err
	}
	path, unlock, err := lockFile(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	file := path + ".known_hosts"
	old, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("vm %q host key: %w", name, err)
	}
	var out strings.Builder
	for line := range strings.Lines(string(old)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			continue
		}
		out.WriteString(strings.TrimRight(line, "\n") + "\n")
	}
	if key != nil {
		out.WriteString(knownhosts.Line([]string{name}, key) + "\n")
	}
	if out.String() == string(old) {
		return nil
	}
	if err := writeAtomic(file, []byte(out.String()), 0o600); err != nil {
		return fmt.Errorf("vm %q host key: %w", name, err)
	}
	return nil
}

// VMHostKey is VM name's host key as the VMs' known_hosts records it; nil
// when it records none.
func VMHostKey(path, name string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(KnownHostsPath(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != name {
			continue
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(f[1:], " ")))
		if err != nil {
			return nil, fmt.Errorf("%s: vm %q: %w", KnownHostsPath(path), name, err)
		}
		return key, nil
	}
	return nil, nil
}
