// Package filelock gives exclusive locks on files that other processes
// honour too (flock), with a wait that a context can end. The inventory,
// the machine's image store and the lab's build cache each lock with it.
package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrUnsupported is returned where the system has no file locks.
var ErrUnsupported = errors.New("locking files is not supported on this system")

// errBusy is what tryLock returns when another holder has the lock.
var errBusy = errors.New("held by another process")

// Held is a lock taken; Unlock releases it.
type Held struct{ f *os.File }

// File is the lock file, open for reading and writing, for a holder that
// records who it is (the inventory writes its process ID there).
func (h *Held) File() *os.File { return h.f }

// Unlock releases the lock. The lock file stays: removing it would let two
// processes lock two different files.
func (h *Held) Unlock() {
	_ = unlockFile(h.f)
	h.f.Close()
}

// Lock takes the exclusive lock on path (created 0600 if missing),
// waiting until ctx ends; the error then wraps ctx's cause.
func Lock(ctx context.Context, path string) (*Held, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	delay := 5 * time.Millisecond
	for {
		err := tryLock(f)
		if err == nil {
			return &Held{f: f}, nil
		}
		if !errors.Is(err, errBusy) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}
