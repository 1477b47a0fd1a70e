package inventory

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/butter-cloud/butter/internal/filelock"
)

// LockTimeout bounds how long Update waits for another butter process to
// finish its change (a shorter context deadline wins).
const LockTimeout = 10 * time.Second

// lock takes the exclusive lock on the file name, waiting up to
// LockTimeout or until ctx ends, and writes this process's ID into it so a
// waiter can say who holds it.
func lock(ctx context.Context, name string) (unlock func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, LockTimeout)
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
