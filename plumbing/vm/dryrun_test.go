package vm

import (
	"strings"
	"testing"
)

// A create's dry run needs no libvirtd, and names the VM's seed, tap and
// the virsh steps Create takes, in its order.
func TestCreateDryRun(t *testing.T) {
	got := strings.Join(CreateDryRun(Options{VMsDir: "/srv/vms"}, "web"), "\n")
	for _, want := range []string{"virsh vol-create butter-vms <volume web.qcow2", "/srv/vms/web-seed.iso",
		"virsh define <domain web", "virsh autostart web\nvirsh start web"} {
		if !strings.Contains(got, want) {
			t.Errorf("create dry run lacks %q:\n%s", want, got)
		}
	}
}
