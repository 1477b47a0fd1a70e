package filelock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestLockExcludesAndWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	h, err := Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	// A second lock, even in this process (flock is per open file), waits
	// until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a second lock while held: %v, want the context's deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		h2, err := Lock(context.Background(), path)
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
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("no flock(1) to hold a lock from another process")
	}
	path := filepath.Join(t.TempDir(), "x.lock")
	h, err := Lock(context.Background(), path)
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
