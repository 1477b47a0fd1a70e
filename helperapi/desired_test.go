package helperapi

import (
	"net/netip"
	"testing"
)

func TestCheckGeneration(t *testing.T) {
	d := func(gen int64, net string) *Desired {
		return &Desired{Generation: gen, Networks: []DesiredNetwork{{Name: net, Subnet: netip.MustParsePrefix("10.20.0.0/24"), ID: 1}}}
	}
	held := d(5, "blue")
	for _, tc := range []struct {
		name  string
		spec  Spec
		held  int64
		stale bool
	}{
		{"newer", Spec{Generation: 6, Desired: d(6, "red")}, 5, false},
		{"retry of the same change", Spec{Generation: 5, Desired: d(5, "blue")}, 5, false},
		{"another change from the same base", Spec{Generation: 5, Desired: d(5, "red")}, 5, true},
		{"older", Spec{Generation: 4, Desired: d(4, "blue")}, 5, true},
		{"bare spec", Spec{}, 5, false},
		{"machine without a generation", Spec{Generation: 1, Desired: d(1, "red")}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckGeneration(tc.spec, tc.held, held.Digest())
			if got := IsStale(err); got != tc.stale {
				t.Fatalf("CheckGeneration = %v; stale %v, want %v", err, got, tc.stale)
			}
			if IsInvalid(err) {
				t.Fatalf("a stale refusal is not bad input: %v", err)
			}
		})
	}
	if d(5, "blue").Digest() == d(5, "red").Digest() || d(5, "blue").Digest() != held.Digest() {
		t.Fatal("Digest does not follow the content")
	}
}
