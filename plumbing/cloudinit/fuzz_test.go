package cloudinit

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// aliceKeyBlob is aliceKey without its comment: the comment is the free
// text of a key line, where a hostile operator input would hide YAML.
var aliceKeyBlob = strings.TrimSuffix(aliceKey, " alice@laptop")

// FuzzSeedISO feeds the seed writer's inputs: a seed that validates must
// make an image (no error, no panic), whose Rock Ridge tree holds exactly
// the seed's documents, whose meta-data reads back as the instance ID and
// host name given and whose user-data lists the key line unchanged (no
// input can add a YAML key or a document of its own).
func FuzzSeedISO(f *testing.F) {
	f.Add("vm-7f3c2a", "web1", "", "alice@laptop", "eth0", []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}, "10.0.0.5/24", "10.0.0.1", 1370, "9.9.9.9")
	f.Add("i-1", "web1.example.org", "ops", "x: y - z # not a comment", "e", []byte{2, 0, 0, 0, 0, 1}, "", "", 0, "")
	f.Add("a:b.c_d-e", "db", "_svc", "#cloud-config --- runcmd: [rm -rf /]", "ens3", []byte{2, 1, 2, 3, 4, 5}, "fd00::5/64", "fd00::1", 9000, "fd00::53")
	f.Add("yes", "null", "true", "'\"&*!|>%@`", "eth0", []byte{2, 0, 0, 0, 0, 2}, "192.168.1.2/32", "", 68, "1.1.1.1")
	f.Fuzz(func(t *testing.T, id, host, user, comment, ifName string, mac []byte, addr, gw string, mtu int, dns string) {
		s := Seed{InstanceID: id, Hostname: host, User: user, NIC: NIC{MAC: net.HardwareAddr(mac), Name: ifName, MTU: mtu}}
		if comment != "" {
			s.SSHKeys = []string{aliceKeyBlob + " " + comment}
		}
		if p, err := netip.ParsePrefix(addr); err == nil {
			s.NIC.Address = p
		}
		if a, err := netip.ParseAddr(gw); err == nil {
			s.NIC.Gateway = a
		}
		if a, err := netip.ParseAddr(dns); err == nil {
			s.NIC.DNS = []netip.Addr{a}
		}
		if s.Validate() != nil {
			return
		}
		files, err := s.Files()
		if err != nil {
			t.Fatalf("a valid seed's documents: %v", err)
		}
		img, err := s.ISO()
		if err != nil {
			t.Fatalf("a valid seed's image: %v", err)
		}
		if len(img) > 1<<20 || len(img)%2048 != 0 {
			t.Fatalf("image of %d bytes", len(img))
		}
		got, err := readISOTree(img, 16)
		if err != nil {
			t.Fatalf("read the image back: %v", err)
		}
		if diff := cmp.Diff(stringMap(files), stringMap(got)); diff != "" {
			t.Fatalf("files read back (-want +got):\n%s", diff)
		}
		var md map[string]any
		if err := yaml.Unmarshal(files[MetaDataFile], &md); err != nil {
			t.Fatalf("meta-data: %v", err)
		}
		if diff := cmp.Diff(map[string]any{"instance-id": id, "local-hostname": host}, md); diff != "" {
			t.Fatalf("meta-data (-want +got):\n%s", diff)
		}
		var cc struct {
			Users []struct {
				Keys []string `yaml:"ssh_authorized_keys"`
			} `yaml:"users"`
			Keys []string `yaml:"ssh_authorized_keys"`
		}
		if err := yaml.Unmarshal(files[UserDataFile], &cc); err != nil {
			t.Fatalf("user-data: %v\n%s", err, files[UserDataFile])
		}
		var keys []string
		keys = append(keys, cc.Keys...)
		for _, u := range cc.Users {
			keys = append(keys, u.Keys...)
		}
		if len(s.SSHKeys) > 0 && !slices.Contains(keys, s.SSHKeys[0]) {
			t.Fatalf("user-data lists keys %q, want %q among them:\n%s", keys, s.SSHKeys[0], files[UserDataFile])
		}
		if n := strings.Count(string(files[UserDataFile]), "\n---"); n != 0 {
			t.Fatalf("user-data has %d extra YAML documents:\n%s", n, files[UserDataFile])
		}
	})
}
