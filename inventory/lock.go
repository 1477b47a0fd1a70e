package inventory

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/butter-cloud/butter/internal/filelock"
)

// LockTimeout bounds how long Update waits for another butter process to
// finish its change (a shorter context deadline wins).
const LockTimeout = 10 * time.Second

// ChangeLockTimeout bounds how long LockChanges waits for another butter
// process's change to the cloud (its machines applying it included).
const ChangeLockTimeout = 3 * time.Minute

// LockChanges takes the lock that serializes changes to the cloud whose
// inventory is at path ("<path>.changes.lock"): a change holds it from
// checking the inventory until it is recorded, machines applying it
// included, so two butter processes (or a VM made alongside a change)
// never record over each other or give machines one generation with two
// contents. It waits up to ChangeLockTimeout or until ctx ends.
func LockChanges(ctx context.Context, path string) (unlock func(), err error) {
	if path, err = resolve(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create inventory folder %s: %w", filepath.Dir(path), err)
	}
	return lockWithin(ctx, path+".changes.lock", ChangeLockTimeout)
}

// lock takes the exclusive lock on the file name, waiting up to
// LockTimeout or until ctx ends, and writes this process's ID into it so a
// waiter can say who holds it.
func lock(ctx context.Context, name string) (unlock func(), err error) {
	return lockWithin(ctx, name, LockTimeout)
}

func lockWithin(ctx context.Context, name string, timeout time.Duration) (unlock func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	h, err := filelock.Lock(ctx, name)
	if err != nil {
		if ctx.Err() == nil {
			return nil, err
		}
		holder := "another butter process"
		if b, err := os.ReadFile(name); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				holder = fmt.Sprintf("another butter process (pid %d)", pid)
			}
		}
		return nil, fmt.Errorf("inventory is in use by %s: gave up waiting for the lock %s after %s: %w",
			holder, name, time.Since(start).Round(time.Millisecond), ctx.Err())
	}
	f := h.File()
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		f.Truncate(0)
		h.Unlock()
	}, nil
}
