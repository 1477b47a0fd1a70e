package inventory

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testHostKey(t *testing.T, seed byte) ssh.PublicKey {
	t.Helper()
	k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune(seed)), 32))).Public())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The VMs' known_hosts: a line per VM, replaced and dropped by name, a
// hand-written line of another host kept as it is.
func TestSetVMHostKey(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	known := KnownHostsPath(path)
	a, b, c := testHostKey(t, 'a'), testHostKey(t, 'b'), testHostKey(t, 'c')
	line := func(name string, k ssh.PublicKey) string {
		return name + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + "\n"
	}
	const other = "other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9uR+GLTB5sZJihHUSAeVy71mUc2QVOuGF1uJxSteCJ # by hand"
	steps := []struct {
		name string
		vm   string
		key  ssh.PublicKey
		want string
	}{
		{"first", "web", a, line("web", a)},
		{"second", "db", b, line("web", a) + line("db", b)},
		{"replaced", "web", c, line("db", b) + line("web", c)},
		{"a line by hand stays", "", nil, line("db", b) + line("web", c) + other + "\n"},
		{"dropped", "db", nil, line("web", c) + other + "\n"},
		{"dropped again: nothing", "db", nil, line("web", c) + other + "\n"},
	}
	for _, s := range steps {
		if s.vm == "" {
			f, err := os.OpenFile(known, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(other) // no final newline: one is added
			f.Close()
			continue
		}
		if err := SetVMHostKey(ctx, path, s.vm, s.key); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		got, _ := os.ReadFile(known)
		if string(got) != s.want {
			t.Errorf("%s: known_hosts has\n%s\nwant\n%s", s.name, got, s.want)
		}
	}
	if k, err := VMHostKey(path, "web"); err != nil || k == nil || string(k.Marshal()) != string(c.Marshal()) {
		t.Errorf("VMHostKey(web) = %v, %v; want the replaced key", k, err)
	}
	if k, err := VMHostKey(path, "db"); k != nil || err != nil {
		t.Errorf("VMHostKey(db) = %v, %v; want none", k, err)
	}
	if err := SetVMHostKey(ctx, path, "../x", a); err == nil {
		t.Error("a bad VM name was written into known_hosts")
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("writing known_hosts made an inventory")
	}
}
