package plumbing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ensureStateDir makes the helper's state folder (0700) if it is missing
// and refuses one that others could change: it holds the machine's
// WireGuard key, the applied spec and, beside it, the helper binaries
// systemd runs as root. A folder of this user that others can only read
// is made private.
func ensureStateDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("make state folder: %w", err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("state folder: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state folder %s is not a folder: remove it or give --state-dir another", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("state folder %s belongs to user %d, not to the helper's (%d): whoever owns it can change the helper's key and spec; "+
			"chown %d %s && chmod 0700 %s", dir, st.Uid, os.Geteuid(), os.Geteuid(), dir, dir)
	}
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 || fi.Mode()&os.ModeSticky != 0 {
		return fmt.Errorf("state folder %s is writable by others (mode %04o): they could change the helper's key and spec; make it private: chmod 0700 %s",
			dir, perm, dir)
	}
	if perm&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make state folder %s private: %w", dir, err)
		}
	}
	return nil
}
