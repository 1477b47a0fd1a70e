package vm

import (
	"slices"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// A boot starts butter's VMs marked to autostart that are off; a VM
// stopped on purpose (no mark) or running is left alone.
func TestToStartAtBoot(t *testing.T) {
	vms := []helperapi.VMInfo{
		{Name: "ran", State: "shut off", Autostart: true},
		{Name: "crashed", State: "crashed", Autostart: true},
		{Name: "stopped", State: "shut off"},
		{Name: "running", State: "running", Autostart: true},
		{Name: "paused", State: "paused", Autostart: true},
	}
	if got, want := toStartAtBoot(vms), []string{"ran", "crashed"}; !slices.Equal(got, want) {
		t.Errorf("toStartAtBoot = %q; want %q", got, want)
	}
}
