package inventory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Update changes the inventory at path under an exclusive lock, so two
// butter processes never lose each other's writes. It locks
// "<path>.lock" (waiting up to LockTimeout or until ctx ends), loads the
// file (a missing one is New()), calls fn, fills defaults fn left at zero
// (a machine's port, a network's tunnel, the mesh), validates, and saves:
// the version being replaced is copied to "<path>.bak", then the new one is
// written to a temporary file beside it, synced, renamed over the file, and
// the folder synced. A missing folder is created 0700; a new file is 0600,
// and a file being replaced keeps its permissions (so does its .bak).
//
// The file is written anew from the inventory (see Marshal): of the
// comments in it, only the block at its top is kept, in place of butter's
// header; comments anywhere else are dropped.
//
// Nothing is written when fn fails (its error is returned as is), when the
// result does not validate, or when nothing changed. A file that does not
// load is never overwritten: the error says where the last good copy is.
// A symbolic link at path is followed, and stays a link.
func Update(ctx context.Context, path string, fn func(*Inventory) error) error {
	path, unlock, err := lockFile(ctx, path)
	if err != nil {
		return err
	}
	defer unlock()
	return updateLocked(path, fn)
}

// lockFile follows a link at path, makes the folder, takes the
// inventory's lock and clears what a crashed save left behind. It returns
// the file's real path and how to unlock.
func lockFile(ctx context.Context, path string) (real string, unlock func(), err error) {
	path, err = resolve(path)
	if err != nil {
		return "", nil, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("create inventory folder %s: %w", dir, err)
	}
	unlock, err = lock(ctx, path+".lock")
	if err != nil {
		return "", nil, err
	}
	removeTemps(dir, base)
	return path, unlock, nil
}

// updateLocked is Update with the lock held and path resolved.
func updateLocked(path string, fn func(*Inventory) error) error {
	inv, old, err := load(path)
	if err != nil {
		return refuse(path, err)
	}
	if err := fn(inv); err != nil {
		return err
	}
	inv.fillDefaults()
	if probs := inv.validate(); len(probs) > 0 {
		return fmt.Errorf("inventory not saved: %w", toError(path, probs, nil))
	}
	data, err := inv.Marshal()
	if err != nil {
		return err
	}
	if old == nil {
		return writeAtomic(path, data, 0o600)
	}
	data = keepTopComments(old, data)
	if bytes.Equal(data, old) {
		return nil
	}
	perm := fs.FileMode(0o600)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := writeAtomic(path+".bak", old, perm); err != nil {
		return fmt.Errorf("keep the previous inventory: %w", err)
	}
	return writeAtomic(path, data, perm)
}

// resolve follows a symbolic link at path, so saving replaces the file it
// points to rather than the link.
func resolve(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	switch {
	case err == nil:
		return real, nil
	case errors.Is(err, fs.ErrNotExist):
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return "", fmt.Errorf("inventory %s: a symbolic link to a missing file; create the file or remove the link", path)
		}
		return path, nil
	default:
		return "", fmt.Errorf("inventory %s: %w", path, err)
	}
}

// refuse explains that a file that does not load is left alone, and how to
// get going again.
func refuse(path string, err error) error {
	var ierr *Error
	if !errors.As(err, &ierr) {
		return err
	}
	bak := path + ".bak"
	var how string
	switch _, _, berr := load(bak); {
	case berr == nil && fileExists(bak):
		how = fmt.Sprintf("fix the file, or go back to the version before butter's last change, which loads: cp %s %s", bak, path)
	case fileExists(bak):
		how = fmt.Sprintf("fix the file; the previous version, %s, does not load either", bak)
	default:
		how = fmt.Sprintf("fix the file, or move it away to start an empty inventory (there is no %s)", bak)
	}
	return fmt.Errorf("%w\nbutter will not change %s until it loads: %s", err, path, how)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeAtomic replaces path with data, a file with permissions perm: a
// temporary file in the same folder, synced, renamed over path, then the
// folder synced, so a crash leaves either the old file or the new one.
func writeAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("save %s: %w", path, err)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}

// removeTemps removes temporary files a crashed save left behind. Only
// called under the lock, when no save is under way.
func removeTemps(dir, base string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+glob(base)+"*.tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// glob escapes a file name for filepath.Glob.
func glob(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
