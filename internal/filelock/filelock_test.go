package filelock_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/filelock"
	"github.com/butter-cloud/butter/internal/testbed"
)

func TestLockExcludesAndWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	h, err := filelock.Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// A second lock, even in this process (flock is per open file), waits
	// until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := filelock.Lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second lock while held: %v, want the context's deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		h2, err := filelock.Lock(context.Background(), path)
		if err == nil {
			h2.Unlock()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	h.Unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the lock after it was released")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file: %v, %v; want it kept, 0600", fi, err)
	}
}

// Another process honours the lock.
func TestLockAcrossProcesses(t *testing.T) {
	testbed.NeedPrograms(t, "flock")
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.lock")
	h, err := filelock.Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(flock, "-n", path, "true").Run(); err == nil {
		t.Fatal("flock(1) took the lock while this process held it")
	}
	h.Unlock()
	if err := exec.Command(flock, "-n", path, "true").Run(); err != nil {
		t.Fatalf("flock(1) after unlock: %v", err)
	}
}
