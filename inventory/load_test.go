package inventory

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.yaml")

var equateIP = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func TestLoadMissingIsEmpty(t *testing.T) {
	inv, err := Load(filepath.Join(t.TempDir(), "nothing", "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Inventory{Version: 1, Mesh: Mesh{Prefix: DefaultMeshPrefix, Port: DefaultMeshPort}}
	if diff := cmp.Diff(want, inv, equateIP); diff != "" {
		t.Errorf("missing file (-want +got):\n%s", diff)
	}
}

// TestLoadDefaults: a hand-written file with only what is required gets
// the defaults for the rest.
func TestLoadDefaults(t *testing.T) {
	inv, err := Load("testdata/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Inventory{
		Version: 1,
		Mesh:    Mesh{Prefix: netip.MustParsePrefix("10.99.0.0/16"), Port: 51820},
		Machines: []Machine{
			{Name: "alpha", Address: "alpha.example.com", Port: 22},
			{Name: "7", Address: "192.0.2.7", Port: 22},
		},
		Networks: []Network{
			{Name: "blue", Subnet: netip.MustParsePrefix("10.100.0.0/24"), ID: 1, Tunnel: "auto", Machines: []string{"alpha", "7"}},
		},
	}
	if diff := cmp.Diff(want, inv, equateIP); diff != "" {
		t.Errorf("minimal.yaml (-want +got):\n%s", diff)
	}
}

// TestGolden: the file butter writes, byte for byte (go test -update
// rewrites it), and that it loads back as what was written.
func TestGolden(t *testing.T) {
	inv := sample()
	// Out of order on purpose: the file is sorted.
	inv.Machines[0], inv.Machines[1] = inv.Machines[1], inv.Machines[0]
	inv.Networks[0].Machines = []string{"beta", "alpha"}
	got, err := inv.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/golden.yaml", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("Marshal (-testdata/golden.yaml +got):\n%s", diff)
	}
	back, err := Load("testdata/golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sorted := sample()
	sorted.VMs[0], sorted.VMs[2] = sorted.VMs[2], sorted.VMs[0] // cache, db, web
	if diff := cmp.Diff(sorted, back, equateIP); diff != "" {
		t.Errorf("golden.yaml loads as (-want +got):\n%s", diff)
	}
	again, err := back.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, got) {
		t.Errorf("load and marshal again changed the file:\n%s", again)
	}
}

// TestHostileFiles: each bad file gives every problem with its line, and
// Update refuses to touch it.
func TestHostileFiles(t *testing.T) {
	tests := []struct {
		file string
		want []Problem
	}{
		{"unknown_field.yaml", []Problem{
			{5, `machines[0]: unknown field "hostname"; known fields: name, address, port, user, identity, endpoint, nat, mesh_ip, public_key, accel, confirmed`},
			{10, `networks[0]: unknown field "colour"; known fields: name, subnet, id, tunnel, machines, egress`},
		}},
		{"private_key.yaml", []Problem{
			{5, `machines[0]: unknown field "private_key"; butter keeps no secrets in the inventory: leave keys in their files (a machine's identity is the path of its SSH key)`},
		}},
		{"identity_key_material.yaml", []Problem{
			{5, `machine "alpha" identity: this looks like key material; butter keeps no secrets in the inventory: give the path of the key file`},
		}},
		{"wrong_types.yaml", []Problem{
			{4, `mesh.port: want a whole number, found str "fast"`},
			{7, `machines[0].address: want text, found a list`},
			{8, `machines[0].port: want a whole number, found float "22.5"`},
			{9, `machines[0].nat: want true or false, found str "maybe"`},
			{10, `machines[0].mesh_ip "10.99.0.300": not an IP address`},
			{12, `networks: want a list, found a mapping`},
			{13, `vms: want a list, found str "a VM"`},
		}},
		{"duplicate_keys.yaml", []Problem{
			{5, `machines[0]: "address" given twice (first on line 4)`},
			{8, `the inventory: "mesh" given twice (first on line 6)`},
		}},
		{"negative_port.yaml", []Problem{{5, `machine "alpha" port -22: must be between 1 and 65535`}}},
		{"explicit_zero_port.yaml", []Problem{{5, `machine "alpha" port 0: must be between 1 and 65535`}}},
		{"newer_version.yaml", []Problem{{1, `version 2: this file was written by a newer butter (this one reads version 1); upgrade butter`}}},
		{"no_version.yaml", []Problem{{1, `no version: the file should start with "version: 1"`}}},
		{"empty.yaml", []Problem{{0, `empty: an inventory has at least "version: 1"`}}},
		{"comments_only.yaml", []Problem{{0, `empty: an inventory has at least "version: 1"`}}},
		{"not_yaml.yaml", []Problem{{3, `not valid YAML: found a tab character that violates indentation`}}},
		{"two_documents.yaml", []Problem{{2, `a second YAML document: an inventory is one document`}}},
		{"top_list.yaml", []Problem{{1, `want a mapping with version, mesh, machines, networks and vms; found a list`}}},
		{"alias_bomb.yaml", []Problem{{2, `anchor &a0: anchors and aliases are not allowed in the inventory; write the values out`}}},
		{"merge_key.yaml", []Problem{{3, `anchor &base: anchors and aliases are not allowed in the inventory; write the values out`}}},
		{"garbage.bin", []Problem{{1, `not UTF-8 text: this is not an inventory file`}}},
		{"nul.yaml", []Problem{{3, `a NUL byte: this is not an inventory file`}}},
		{"invalid.yaml", []Problem{
			{9, `machine "Beta": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`},
			{10, `machine "Beta" address "root@192.0.2.11": put the user in "user", not in the address`},
			{11, `machine "Beta" mesh IP 10.99.0.1: already machine "alpha"'s`},
			{12, `machine "Beta" endpoint "192.0.2.11": want host:port, e.g. 192.0.2.7:51820 or [2001:db8::7]:51820`},
			{15, `network "blue" subnet 10.99.1.0/24: overlaps the mesh 10.99.0.0/16`},
			{17, `network "blue" machine "gamma": no such machine in the inventory`},
			{20, `network "green" id 1: already network "blue"'s; each network needs its own id`},
			{21, `network "green" tunnel "ipip": choose "auto", "gretap" or "vxlan"`},
			{24, `VM "web" machine "alpha": not in network "green"; add the machine to the network first`},
			{26, `VM "web" address 10.100.2.5: outside network "green"'s subnet 10.100.1.0/24; pick one inside it, or leave it out for the next free one`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/bad", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "inventory.yaml")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			checkRefused(t, path, data, tt.want)
		})
	}
}

// checkRefused checks that Load reports want for the file at path holding
// data, and that Update refuses it and leaves it as it was.
func checkRefused(t *testing.T, path string, data []byte, want []Problem) {
	t.Helper()
	inv, err := Load(path)
	var ierr *Error
	if !errors.As(err, &ierr) {
		t.Fatalf("Load = %v, %v; want an *Error", inv, err)
	}
	if ierr.Path != path {
		t.Errorf("error path %q, want %q", ierr.Path, path)
	}
	if diff := cmp.Diff(want, ierr.Problems); diff != "" {
		t.Errorf("Load problems (-want +got):\n%s", diff)
	}

	called := false
	err = Update(context.Background(), path, func(inv *Inventory) error {
		called = true
		return nil
	})
	if err == nil || called {
		t.Fatalf("Update on a bad file: called fn %v, error %v; want a refusal without calling fn", called, err)
	}
	if !errors.As(err, &ierr) || !strings.Contains(err.Error(), "butter will not change "+path+" until it loads") {
		t.Errorf("Update error does not explain the refusal: %v", err)
	}
	got, rerr := os.ReadFile(path)
	if rerr != nil || !bytes.Equal(got, data) {
		t.Errorf("Update changed the bad file (read error %v)", rerr)
	}
	if fileExists(path + ".bak") {
		t.Errorf("Update wrote %s.bak for a bad file", path)
	}
}

// TestHugeFile: a 10 MB file is refused without being read whole.
func TestHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	data := append([]byte("version: 1\n# "), bytes.Repeat([]byte("x"), 10<<20)...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	checkRefused(t, path, data, []Problem{{0, "larger than 4 MiB: too large to be an inventory"}})
}

// TestDeepNesting: nesting deep enough to exhaust a recursive parser is an
// error.
func TestDeepNesting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	data := []byte("version: 1\nmachines: " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	checkRefused(t, path, data, []Problem{{2, "not valid YAML: exceeded max depth of 10000"}})
}

// TestRecoveryHint: the refusal points at a .bak that loads.
func TestRecoveryHint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	ctx := context.Background()
	for _, name := range []string{"alpha", "beta"} {
		err := Update(ctx, path, func(inv *Inventory) error {
			inv.Machines = append(inv.Machines, Machine{Name: name, Address: name + ".example.com"})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	corrupt := []byte("version: 1\nmachines:\n  - name: alpha\n    adress: alpha.example.com\n")
	if err := os.WriteFile(path, corrupt, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Update(ctx, path, func(*Inventory) error { return nil })
	want := path + `:4: machines[0]: unknown field "adress"; known fields: name, address, port, user, identity, endpoint, nat, mesh_ip, public_key, accel, confirmed` + "\n" +
		"butter will not change " + path + " until it loads: fix the file, or go back to the version before butter's last change, which loads: cp " + path + ".bak " + path
	if err == nil {
		t.Fatal("Update on a corrupt file succeeded")
	}
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("refusal (-want +got):\n%s", diff)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, corrupt) {
		t.Errorf("the corrupt file was changed")
	}

	// Following the advice works.
	bak, err := os.ReadFile(path + ".bak")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bak, 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Machines) != 1 || inv.Machines[0].Name != "alpha" {
		t.Errorf("the .bak holds %+v; want the version with alpha alone", inv.Machines)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"one with line", &Error{Path: "inv.yaml", Problems: []Problem{{3, "bad"}}}, "inv.yaml:3: bad"},
		{"one without line", &Error{Path: "inv.yaml", Problems: []Problem{{0, "bad"}}}, "inv.yaml: bad"},
		{"in memory", &Error{Problems: []Problem{{0, "bad"}}}, "inventory: bad"},
		{"parsed", &Error{Problems: []Problem{{2, "bad"}}}, "inventory line 2: bad"},
		{"several", &Error{Path: "inv.yaml", Problems: []Problem{{3, "bad"}, {0, "worse"}}},
			"inventory inv.yaml: 2 problems:\n\tinv.yaml:3: bad\n\tworse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("Error() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestManyProblems: a file with thousands of problems gives a bounded
// error.
func TestManyProblems(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nmachines:\n")
	for range 5000 {
		b.WriteString("  - colour: red\n")
	}
	_, err := Parse([]byte(b.String()))
	var ierr *Error
	if !errors.As(err, &ierr) {
		t.Fatalf("Parse = %v; want an *Error", err)
	}
	if n := len(ierr.Problems); n != maxProblems+1 {
		t.Errorf("%d problems listed; want %d and a count of the rest", n, maxProblems+1)
	}
	if got, want := ierr.Problems[maxProblems].Msg, "… and 4950 more problems"; got != want {
		t.Errorf("last problem %q, want %q", got, want)
	}
}
