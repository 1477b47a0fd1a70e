package vm

import (
	"strings"
	"testing"
)

func TestDomainType(t *testing.T) {
	yes := func() bool { return true }
	no := func() bool { return false }
	for _, tt := range []struct {
		accel, verdict string
		answers        func() bool
		want, wantErr  string
	}{
		{"kvm", kvmUnknown, no, "kvm", ""},
		{"tcg", kvmWorks, yes, "qemu", ""},
		{"auto", kvmUnknown, yes, "kvm", ""}, // to be proven by the first guest
		{"auto", kvmUnknown, no, "qemu", ""},
		{"auto", kvmBroken, yes, "qemu", ""}, // remembered: this CI's /dev/kvm
		{"auto", kvmWorks, no, "kvm", ""},
		{"hvf", kvmUnknown, yes, "", `accel "hvf": choose`},
	} {
		got, err := domainType(tt.accel, tt.verdict, tt.answers)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("domainType(%s, %q) error = %v, want %q", tt.accel, tt.verdict, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("domainType(%s, %q, answers=%v) = %q, %v; want %q", tt.accel, tt.verdict, tt.answers(), got, err, tt.want)
		}
	}
}

func TestProofVerdict(t *testing.T) {
	for _, tt := range []struct {
		running bool
		console int64
		verdict string
		done    bool
	}{
		{false, 0, kvmBroken, true},   // paused by a KVM internal error, or gone
		{false, 100, kvmBroken, true}, // wrote, then stopped: not a working guest
		{true, 0, kvmUnknown, false},  // still silent: keep watching until the deadline
		{true, 1, kvmWorks, true},
	} {
		v, done := proofVerdict(tt.running, tt.console)
		if v != tt.verdict || done != tt.done {
			t.Errorf("proofVerdict(running=%v, console=%d) = %q, %v; want %q, %v", tt.running, tt.console, v, done, tt.verdict, tt.done)
		}
	}
}

// The accelerator a machine reports: unproven KVM is neither.
func TestAccelerator(t *testing.T) {
	yes := func() bool { return true }
	no := func() bool { return false }
	for _, tt := range []struct {
		accel, verdict string
		answers        func() bool
		want           string
	}{
		{"kvm", kvmUnknown, no, "kvm"},
		{"tcg", kvmWorks, yes, "tcg"},
		{"auto", kvmUnknown, yes, ""},
		{"auto", kvmUnknown, no, "tcg"},
		{"auto", kvmBroken, yes, "tcg"},
		{"auto", kvmWorks, yes, "kvm"},
		{"hvf", kvmUnknown, yes, ""},
	} {
		if got := accelerator(tt.accel, tt.verdict, tt.answers); got != tt.want {
			t.Errorf("accelerator(%s, %q, answers=%v) = %q; want %q", tt.accel, tt.verdict, tt.answers(), got, tt.want)
		}
	}
}
