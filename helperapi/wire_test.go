package helperapi

import (
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.golden")

// The JSON on the wire is pinned: a helper of an older build and an
// operator of a newer one must read each other's messages the same way
// for the same protocol version. A change here needs ServeProtocol bumped.
func TestWireFormat(t *testing.T) {
	when := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	msgs := []struct {
		name string
		v    any
	}{
		{MethodApply, Spec{
			Mesh:     Mesh{Address: netip.MustParsePrefix("10.99.0.1/16"), ListenPort: 51820, MTU: 1420, Relay: true},
			Peers:    []Peer{{Name: "m2", PublicKey: testKey('b'), Endpoint: "192.0.2.2:51820", MeshIP: netip.MustParseAddr("10.99.0.2"), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.98.0.0/24")}, Keepalive: 25}, {Name: "m3", MeshIP: netip.MustParseAddr("10.99.0.3"), Via: "m2"}},
			Networks: []Network{{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Tunnel: TunnelAuto, Peers: []string{"m2"}}},
		}},
		{MethodApply + " (generation)", Spec{
			Mesh: Mesh{Address: netip.MustParsePrefix("10.99.0.1/16")}, Generation: 7,
			Desired: &Desired{Generation: 7, Mesh: DesiredMesh{Prefix: netip.MustParsePrefix("10.99.0.0/16"), Port: 51820},
				Machines: []DesiredMachine{{Name: "m1", Address: "192.0.2.1", Port: 22, User: "root", Endpoint: "192.0.2.1:51820", MeshIP: netip.MustParseAddr("10.99.0.1"), PublicKey: testKey('a'), Accel: "auto"},
					{Name: "m2", Address: "m2.example.com", NAT: true, MeshIP: netip.MustParseAddr("10.99.0.2"), PublicKey: testKey('b')}},
				Networks: []DesiredNetwork{{Name: "blue", Subnet: netip.MustParsePrefix("10.20.0.0/24"), ID: 1, Tunnel: TunnelAuto, Machines: []string{"m1", "m2"}}},
				VMs:      []DesiredVM{{Name: "web", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.20.0.2")}}},
		}},
		{"error", RemoteError{Code: CodeStale, Message: "stale"}},
		{MethodDryRun, DryRunRequest{Spec: &Spec{Mesh: Mesh{Address: netip.MustParsePrefix("10.99.0.1/16")}, Generation: 8}}},
		{MethodDryRun + " (remove)", DryRunRequest{Remove: true}},
		{MethodDryRun + " (vm)", DryRunRequest{VM: &VMActionRequest{Name: "web", Action: "remove"}}},
		{MethodDryRun + " (answer)", DryRun{Steps: []DryRunStep{{Change: "add bridge btbr1 mtu 1370", Commands: []string{"ip link add name btbr1 mtu 1370 type bridge", "ip link set dev btbr1 up"}}}}},
		{"report", Report{WireGuard: WireGuardReport{Name: "btwg0", MTU: 1420, Userspace: true, PublicKey: testKey('a'), ListenPort: 51820},
			Networks: []NetworkReport{{Name: "blue", ID: 1, Tunnel: TunnelVXLAN, MTU: 1370, Bridge: "btbr1", Ports: []string{"btvx1"}}}, Changes: []string{"add bridge btbr1"}}},
		{MethodCheck, CheckResult{Drift: []Drift{{Link: "btbr1", Problem: "missing"}}}},
		{MethodFacts, Facts{KernelWireGuard: true, Gretap: true, Uplink: "eth0", UplinkMTU: 1500, Peers: []PeerFacts{{Name: "m2", PublicKey: testKey('b'), Endpoint: "192.0.2.2:51820", LastHandshake: when, HandshakeAge: 3, RxBytes: 1, TxBytes: 2}},
			Addresses: []string{"192.0.2.1"}, Version: "0123456789abcdef", Generation: 7, Load: Load{CPUs: 2, Load1: 0.5, MemTotalMiB: 2048, MemAvailableMiB: 1024}}},
		{MethodVMCreate, VMRequest{Name: "web", CPUs: 1, MemoryMiB: 512, DiskGiB: 10, Image: "debian-12", Network: "blue", Address: "10.20.0.2", Gateway: "10.20.0.1", Hostname: "web", SSHKeys: []string{"ssh-ed25519 AAAA"}, Cmdline: "quiet", Creator: "me@laptop"}},
		{"vm info", VMInfo{Name: "web", State: "running", CPUs: 1, MemoryMiB: 512, CPUTime: time.Second, Network: "blue", Address: "10.20.0.2/24", Image: "debian-12", Creator: "me@laptop", Created: when, MAC: "52:54:00:00:00:01", Autostart: true}},
		{MethodVMAction, VMActionRequest{Name: "web", Action: "stop", TimeoutSeconds: 30, Force: true}},
		{NotifyEvent, VMEvent{VM: "web", Event: "started", State: "running"}},
		{NotifyProgress, ProgressEvent{VM: "web", Progress: Progress{Name: "disk.qcow2", Phase: PhaseUpload, Done: 1, Total: 2}}},
		{NotifyWatchEnded, WatchEnded{Error: "vm events: libvirtd hung up"}},
		{"source", Source{URL: "https://example.com/d.img", Checksum: Checksum{Algo: "sha256", Hex: "ab"}}},
	}
	var got []byte
	for _, m := range msgs {
		b, err := json.Marshal(m.v)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.name+" "+string(b)+"\n"...)
	}
	path := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("the wire format changed (-before +now); bump ServeProtocol if it must:\n%s", d)
	}
}
