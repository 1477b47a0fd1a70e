package inventory

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// LockTimeout bounds how long Update waits for another butter process to
// finish its change (a shorter context deadline wins).
const LockTimeout = 10 * time.Second

// errBusy is what tryLock returns when another holder has the lock.
var errBusy = errors.New("held by another process")

// lock takes the exclusive lock on the file name, waiting up to
// LockTimeout or until ctx ends, and writes this process's ID into it so a
// waiter can say who holds it. The lock file stays: removing it would let
// two processes lock two different files.
func lock(ctx context.Context, name string) (unlock func(), err error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, LockTimeout)
	defer cancel()
	start := time.Now()
	delay := 5 * time.Millisecond
	for {
		err := tryLock(f)
		if err == nil {
			break
		}
		if !errors.Is(err, errBusy) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			holder := "another butter process"
			if b, err := os.ReadFile(name); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
					holder = fmt.Sprintf("another butter process (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("inventory is in use by %s: gave up waiting for the lock %s after %s: %w",
				holder, name, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		f.Truncate(0)
		unlockFile(f)
		f.Close()
	}, nil
}
