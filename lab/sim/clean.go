package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Clean removes whatever a lab called name left behind, for instance after
// a crash: processes in its namespaces, its mount namespaces, its network
// namespaces and its state folder.
func Clean(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	t, err := lookTools()
	if err != nil {
		return err
	}
	return clean(ctx, t, name)
}

// Leftovers lists what exists of lab name: its network namespaces and its
// state folder.
func Leftovers(name string) ([]string, error) {
	var left []string
	nss, err := labNetns(name)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		left = append(left, netnsPath(ns))
	}
	dir := filepath.Join(StateRoot, name)
	if _, err := os.Stat(dir); err == nil {
		left = append(left, dir)
	}
	return left, nil
}

// labNetns lists the network namespaces of lab name.
func labNetns(name string) ([]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var nss []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			nss = append(nss, e.Name())
		}
	}
	return nss, nil
}

func clean(ctx context.Context, t tools, name string) error {
	var errs []error
	nss, err := labNetns(name)
	if err != nil {
		errs = append(errs, err)
	}
	var paths []string
	for _, ns := range nss {
		paths = append(paths, netnsPath(ns))
	}
	if err := killIn(ctx, paths); err != nil {
		errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
	}

	// Mount namespaces first: a machine's sysfs holds its network namespace.
	dir := filepath.Join(StateRoot, name)
	nsDir := filepath.Join(dir, "ns")
	files, err := os.ReadDir(nsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
	}
	for _, f := range files {
		path := filepath.Join(nsDir, f.Name())
		if mounted(path) {
			if _, err := Output(exec.CommandContext(ctx, t.umount, "--lazy", path)); err != nil {
				errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
				continue
			}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
		}
	}
	if err := os.Remove(nsDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
	}
	if mounted(dir) {
		if _, err := Output(exec.CommandContext(ctx, t.umount, "--lazy", dir)); err != nil {
			errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
		}
	}
	// What MkdirAll made under the bind mount.
	_ = os.Remove(nsDir)
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
	}
	_ = os.Remove(StateRoot) // only if no other lab is left

	for _, ns := range nss {
		if err := t.runIP(ctx, "netns", "delete", ns); err != nil {
			if _, serr := os.Stat(netnsPath(ns)); serr == nil {
				errs = append(errs, fmt.Errorf("clean lab %q: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// mounted tells whether path is a mount point, from /proc/self/mountinfo.
func mounted(path string) bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	return slices.Contains(MountPoints(string(data)), path)
}

// MountPoints lists the mount points of a mountinfo text, in order.
func MountPoints(mountinfo string) []string {
	var points []string
	for line := range strings.Lines(mountinfo) {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		points = append(points, unescapeMount(f[4]))
	}
	return points
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// killIn kills every process whose network namespace is one of netns
// (paths) and waits, up to a few seconds, until they are gone.
func killIn(ctx context.Context, netns []string) error {
	if len(netns) == 0 {
		return nil
	}
	var want []os.FileInfo
	for _, p := range netns {
		if fi, err := os.Stat(p); err == nil {
			want = append(want, fi)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := PidsIn(want)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v survive SIGKILL", pids)
		}
		for _, pid := range pids {
			_ = killPID(pid)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// PidsIn lists live processes (other than this one) whose network
// namespace is one of want.
func PidsIn(want []os.FileInfo) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		fi, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err != nil {
			continue // gone, a zombie, or a kernel thread
		}
		for _, w := range want {
			if os.SameFile(fi, w) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
