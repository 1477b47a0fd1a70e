package vm

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// A name that is not a VM name never reaches libvirt or the file system:
// the Manager here has no libvirt connection, so anything past the check
// would panic; and a seed file beside the VMs folder stays.
func TestManagerRefusesBadNames(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	vms := filepath.Join(root, "vms")
	os.Mkdir(vms, 0o700)
	victim := filepath.Join(root, "x-seed.iso")
	os.WriteFile(victim, []byte("keep"), 0o600)
	m := &Manager{o: Options{VMsDir: vms, LogDir: vms}}
	for _, name := range []string{"../x", "/etc/passwd", "", "a\x1b]0;t\x07", strings.Repeat("b", 33)} {
		calls := map[string]error{
			"remove":  m.Remove(ctx, name),
			"start":   m.Start(ctx, name),
			"reboot":  m.Reboot(ctx, name, true),
			"console": m.Console(ctx, name, strings.NewReader(""), io.Discard, 10),
		}
		_, calls["stop"] = m.Stop(ctx, name, 0)
		_, calls["get"] = m.Get(ctx, name)
		for verb, err := range calls {
			if !helperapi.IsInvalid(err) {
				t.Errorf("%s %q: %v; want a CodeInvalid refusal", verb, name, err)
			}
		}
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("remove ../x reached outside the VMs folder: %v", err)
	}
}
