package sim

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// tools are the absolute paths of the programs the lab drives.
type tools struct {
	ip, nsenter, unshare, mount, umount, sh string
}

// lookTools finds the lab's programs once; a machine without one of them
// cannot run a lab.
var lookTools = sync.OnceValues(func() (tools, error) {
	var t tools
	var missing []string
	for _, p := range []struct {
		dst  *string
		name string
		pkg  string
	}{
		{&t.ip, "ip", "iproute2"},
		{&t.nsenter, "nsenter", "util-linux"},
		{&t.unshare, "unshare", "util-linux"},
		{&t.mount, "mount", "mount"},
		{&t.umount, "umount", "mount"},
		{&t.sh, "sh", "dash"},
	} {
		path, err := LookPath(p.name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", p.name, p.pkg))
			continue
		}
		*p.dst = path
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("the lab needs %s: install it", strings.Join(missing, ", "))
	}
	return t, nil
})

// LookPath finds name on PATH or in the system folders that a root shell
// has but a test's environment may lack.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(dir, name)
		if p2, err := exec.LookPath(p); err == nil {
			return p2, nil
		}
	}
	return "", fmt.Errorf("%s: not found on PATH nor in /usr/sbin, /usr/bin, /sbin, /bin", name)
}

// absProgram makes a program given by a relative path absolute, because
// nsenter --mount changes the working directory to /. A bare name is left
// for nsenter to find on PATH.
func absProgram(name string) string {
	if strings.ContainsRune(name, '/') && !filepath.IsAbs(name) {
		if abs, err := filepath.Abs(name); err == nil {
			return abs
		}
	}
	return name
}

// Output runs cmd and returns its standard output; the error names the
// command line and carries what it printed on standard error.
func Output(cmd *exec.Cmd) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &stdout
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if msg != "" {
			return stdout.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return stdout.Bytes(), nil
}

// ip runs one iproute2 command from the root namespace.
func (t tools) runIP(ctx context.Context, args ...string) error {
	_, err := Output(exec.CommandContext(ctx, t.ip, args...))
	return err
}

// nsCommand runs name inside a network namespace (netns, a path) and,
// if mntns is not empty, a mount namespace (a path to its bound file).
func (t tools) nsCommand(ctx context.Context, netns, mntns, name string, args ...string) *exec.Cmd {
	argv := []string{"--net=" + netns}
	if mntns != "" {
		argv = append(argv, "--mount="+mntns)
	}
	argv = append(argv, "--", absProgram(name))
	argv = append(argv, args...)
	nsenter := t.nsenter
	if nsenter == "" {
		nsenter = "nsenter" // lookTools failed; the error shows when it runs
	}
	return exec.CommandContext(ctx, nsenter, argv...)
}

// CheckTools reports the programs Up needs that this machine lacks, with
// the packages that have them.
func CheckTools() error {
	_, err := lookTools()
	return err
}
