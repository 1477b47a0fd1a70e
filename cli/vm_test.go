package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// closedPort is a local TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestVMListJSON: a script tells an empty cloud (exit 0, []) from one
// whose machines do not answer (exit 1, the inventory's VMs as unknown,
// the machines named on stderr).
func TestVMListJSON(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		emptyCloud(t)
		code, out, errs := butter(t, Options{}, "vm", "list", "--json")
		if code != 0 || out != "[]\n" || errs != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0, [], nothing", code, out, errs)
		}
	})
	t.Run("no machine answers", func(t *testing.T) {
		inv := emptyCloud(t)
		data := fmt.Sprintf(`version: 1
machines:
  - name: m1
    address: 127.0.0.1
    port: %d
    mesh_ip: 10.99.0.1
networks:
  - name: blue
    subnet: 10.100.0.0/24
    id: 1
    machines: [m1]
vms:
  - name: web
    machine: m1
    network: blue
    address: 10.100.0.2
`, closedPort(t))
		if err := os.WriteFile(inv, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errs := butter(t, Options{}, "vm", "list", "--json")
		var vms []cloud.VMStatus
		if err := json.Unmarshal([]byte(out), &vms); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		if code != 1 || len(vms) != 1 || vms[0].Name != "web" || vms[0].State != cloud.VMUnknown {
			t.Errorf("exit %d, vms %+v; want 1 and web, unknown", code, vms)
		}
		lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "butter: machine m1 did not answer (") ||
			!strings.Contains(lines[0], "connection refused") || !strings.HasPrefix(lines[1], "butter: no machine answered") {
			t.Errorf("stderr %q: want m1 named with its reason, then that no machine answered", errs)
		}
	})
}

func TestInsecureNoChecksumFlag(t *testing.T) {
	tests := []struct {
		image, want, wantErr string
	}{
		{image: "https://example.com/d.img", want: "https://example.com/d.img" + helperapi.InsecureNoChecksumSuffix},
		{image: "https://example.com/d.img" + helperapi.InsecureNoChecksumSuffix, want: "https://example.com/d.img" + helperapi.InsecureNoChecksumSuffix},
		{image: "debian-12", wantErr: "goes only with an https --image URL"},
		{image: "https://example.com/d.img,checksum=sha256:ab", wantErr: "has no checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			nv := cloud.NewVM{Image: tt.image, SSHKeys: []string{"ssh-ed25519 AAAA"}}
			err := vmCreateFlags{memory: "512M", insecureNoChecksum: true}.read(&nv)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("read = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || nv.Image != tt.want {
				t.Fatalf("read: image %q, %v; want %q", nv.Image, err, tt.want)
			}
			if _, err := helperapi.ParseSource(nv.Image); err != nil {
				t.Fatalf("the helper would refuse %q: %v", nv.Image, err)
			}
		})
	}
}
