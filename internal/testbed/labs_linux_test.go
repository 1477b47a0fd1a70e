package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/butter-cloud/butter/lab/sim"
)

// TestClaimLabRemovesStale leaves a lab behind as a crashed run would (its
// owner a process that has exited) and checks that the next claim of the
// same prefix removes it, and leaves a live owner's lab alone.
func TestClaimLabRemovesStale(t *testing.T) {
	NeedLab(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale, live := LabName("zq"), LabName("zq")
	for _, name := range []string{stale, live} {
		if _, err := sim.Up(t.Context(), sim.Config{Name: name, Machines: 1}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sim.Clean(context.Background(), name) })
	}
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The exited process's PID, with a start time no process has.
	records := map[string]string{stale: fmt.Sprintf("%d 1", dead.Process.Pid), live: selfOwner()}
	for name, rec := range records {
		if err := os.WriteFile(filepath.Join(OwnerDir, name), []byte(rec), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(filepath.Join(OwnerDir, name)) })
	}

	mine := ClaimLab(t, "zq")
	if left, err := sim.Leftovers(stale); err != nil || len(left) > 0 {
		t.Errorf("the stale lab %s is still there: %v %v", stale, left, err)
	}
	if _, err := os.Stat(filepath.Join(OwnerDir, stale)); err == nil {
		t.Errorf("the stale lab's owner record is still there")
	}
	if left, err := sim.Leftovers(live); err != nil || len(left) == 0 {
		t.Errorf("the live lab %s was removed: %v %v", live, left, err)
	}
	if b, err := os.ReadFile(filepath.Join(OwnerDir, mine)); err != nil || string(b) != selfOwner() {
		t.Errorf("claim of %s recorded %q (%v), want %q", mine, b, err, selfOwner())
	}
}
