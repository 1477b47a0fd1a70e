package holder

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// Socket is the holder's socket for the inventory at inventory, used by
// the butter executable exe: one holder per inventory and per build (a
// rebuilt butter does not talk to an older one's holder, whose helper
// version may differ). The folder is made private (0700) if missing and
// refused if it is not the user's own and private.
func Socket(inventory, exe string) (string, error) {
	dir, err := socketDir()
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(inventory)
	if err != nil {
		return "", fmt.Errorf("holder socket: %w", err)
	}
	id := abs + "\x00" + exe
	if fi, err := os.Stat(exe); err == nil {
		id += fmt.Sprintf("\x00%d\x00%d", fi.Size(), fi.ModTime().UnixNano())
	}
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".sock"), nil
}

// socketDir is $XDG_RUNTIME_DIR/butter, else butter-<uid> in the
// temporary folder (macOS has no XDG_RUNTIME_DIR), made 0700 and checked
// to be a folder the user owns that nobody else may enter.
func socketDir() (string, error) {
	dir := filepath.Join(os.TempDir(), "butter-"+strconv.Itoa(os.Getuid()))
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		dir = filepath.Join(rt, "butter")
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("holder folder %s: %w", dir, err)
	}
	if err := checkPrivate(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// checkPrivate refuses a folder that is a symlink, not the user's own, or
// open to others.
func checkPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("holder folder %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("holder folder %s is not a folder", dir)
	}
	if uid, ok := ownerOf(fi); ok && uid != os.Getuid() {
		return fmt.Errorf("holder folder %s belongs to uid %d, not %d", dir, uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("holder folder %s has mode %v; it must be 0700", dir, fi.Mode().Perm())
	}
	return nil
}

// Listen listens on socket, mode 0600. A socket file left by a holder
// that is gone is replaced; one a holder answers on is an error.
func Listen(socket string) (*net.UnixListener, error) {
	if err := checkPrivate(filepath.Dir(socket)); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", socket); err == nil {
		c.Close()
		return nil, fmt.Errorf("holder %s: another holder listens there", socket)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("holder %s: %w", socket, err)
	}
	// The folder is private already; the socket is made 0600 before it
	// is announced (the rename), so nobody meets a wider one.
	tmp := socket + ".new." + strconv.Itoa(os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("holder %s: %w", socket, err)
	}
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("holder %s: %w", socket, err)
	}
	if err := os.Rename(tmp, socket); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("holder %s: %w", socket, err)
	}
	return ln, nil
}
