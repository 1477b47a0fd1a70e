package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/butter-cloud/butter/internal/filelock"
)

// DefaultCacheDir holds built lab artifacts (extracted kernels, initramfs
// images), each in a folder named for a hash of its inputs.
const DefaultCacheDir = "/var/cache/butter/lab"

// Cached returns the folder cacheDir/key, building it first if it is not
// there yet. build fills a fresh temporary folder, which then is renamed into
// place, so a folder that exists is complete. Builders of the same key wait
// for each other through a lock file. version is written into the folder
// and checked, so an artifact from an incompatible builder is rebuilt.
func Cached(ctx context.Context, cacheDir, key, version string, build func(dir string) error) (string, error) {
	final := filepath.Join(cacheDir, key)
	if ok := cacheValid(final, version); ok {
		now := time.Now()
		os.Chtimes(final, now, now) // recently used: PruneCache keeps it
		return final, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	lock, err := filelock.Lock(ctx, filepath.Join(cacheDir, key+".lock"))
	if err != nil {
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	defer lock.Unlock()
	if ok := cacheValid(final, version); ok {
		return final, nil // built by someone else while we waited
	}
	tmp, err := os.MkdirTemp(cacheDir, key+".tmp-")
	if err != nil {
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	if err := build(tmp); err != nil {
		return "", fmt.Errorf("build %s: %w", key, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".version"), []byte(version+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	if err := os.RemoveAll(final); err != nil { // a stale or foreign version
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("cache %s: %w", key, err)
	}
	return final, nil
}

func cacheValid(dir, version string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ".version"))
	return err == nil && strings.TrimSpace(string(b)) == version
}

// PruneCache removes the oldest folders of cacheDir whose names start with
// prefix, keeping the newest keep of them. Entries in use by a builder are
// left alone.
func PruneCache(cacheDir, prefix string, keep int) error {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("prune cache: %w", err)
	}
	type entry struct {
		name string
		mod  time.Time
	}
	var dirs []entry
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) || strings.Contains(e.Name(), ".tmp-") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		dirs = append(dirs, entry{e.Name(), info.ModTime()})
	}
	if len(dirs) <= keep {
		return nil
	}
	slices.SortFunc(dirs, func(a, b entry) int { return b.mod.Compare(a.mod) })
	var errs []error
	for _, d := range dirs[keep:] {
		lock := filepath.Join(cacheDir, d.name+".lock")
		f, err := os.OpenFile(lock, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := os.RemoveAll(filepath.Join(cacheDir, d.name)); err != nil {
				errs = append(errs, err)
			}
			os.Remove(lock)
		}
		f.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prune cache: %w", err)
	}
	return nil
}
