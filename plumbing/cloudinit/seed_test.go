package cloudinit

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9uR+GLTB5sZJihHUSAeVy71mUc2QVOuGF1uJxSteCJ alice@laptop"
	ecdsaKey = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJ+f2lklgI5Xs1j+wRcoM0oqNTK+uhh/v4EtZYdx7GN+XugDikopFayNnahMTc7Dr6Nx3mP5RNbZSJt2ovH1R3o="
)

// testKey reads a throwaway key of testdata/keys.
func testKey(name string) helperapi.PrivateKey {
	b, err := os.ReadFile(filepath.Join("testdata", "keys", name))
	if err != nil {
		panic(err)
	}
	return helperapi.PrivateKey(b)
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// validSeed is a seed with every field set.
func validSeed() Seed {
	return Seed{
		InstanceID: "vm-7f3c2a",
		Hostname:   "web1",
		SSHKeys:    []string{aliceKey},
		NIC: NIC{
			MAC:     mustMAC("52:54:00:12:34:56"),
			Name:    "eth0",
			Address: netip.MustParsePrefix("10.0.0.5/24"),
			Gateway: netip.MustParseAddr("10.0.0.1"),
			MTU:     1370,
			DNS:     []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("9.9.9.9")},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Seed)
		want   []string // substrings of the error, in order; none: valid
	}{
		{"valid", func(*Seed) {}, nil},
		{"fqdn", func(s *Seed) { s.Hostname = "web1.example.org" }, nil},
		{"dhcp", func(s *Seed) { s.NIC.Address, s.NIC.Gateway, s.NIC.DNS = netip.Prefix{}, netip.Addr{}, nil }, nil},
		{"no gateway", func(s *Seed) { s.NIC.Gateway = netip.Addr{} }, nil},
		{"no keys, default MTU", func(s *Seed) { s.SSHKeys, s.NIC.MTU = nil, 0 }, nil},
		{"user", func(s *Seed) { s.User = "alice" }, nil},
		{"host key", func(s *Seed) { s.HostKey = testKey("ed25519") }, nil},
		{"host key ecdsa", func(s *Seed) { s.HostKey = testKey("ecdsa") }, []string{"seed HostKey: host key: not an unencrypted ed25519"}},
		{"host key encrypted", func(s *Seed) { s.HostKey = testKey("ed25519-encrypted") }, []string{"seed HostKey: host key: not an unencrypted ed25519"}},
		{"host key public", func(s *Seed) { s.HostKey = aliceKey }, []string{"seed HostKey: host key: not"}},
		{"ipv6", func(s *Seed) {
			s.NIC.Address = netip.MustParsePrefix("2001:db8::5/64")
			s.NIC.Gateway = netip.MustParseAddr("2001:db8::1")
			s.NIC.MTU = 1400
		}, nil},
		{"point to point /32", func(s *Seed) { s.NIC.Address, s.NIC.Gateway = netip.MustParsePrefix("10.0.0.0/32"), netip.Addr{} }, nil},

		{"no instance ID", func(s *Seed) { s.InstanceID = "" }, []string{"seed InstanceID: empty: set a unique ID"}},
		{"instance ID with a slash", func(s *Seed) { s.InstanceID = "../etc" }, []string{`seed InstanceID "../etc": use letters`}},
		{"instance ID too long", func(s *Seed) { s.InstanceID = strings.Repeat("a", 129) }, []string{"129 characters: use at most 128"}},
		{"no hostname", func(s *Seed) { s.Hostname = "" }, []string{"seed Hostname: empty: set the VM's host name"}},
		{"hostname with a space", func(s *Seed) { s.Hostname = "web 1" }, []string{`seed Hostname "web 1": label "web 1"`}},
		{"hostname with an empty label", func(s *Seed) { s.Hostname = "web1..org" }, []string{`label ""`}},
		{"hostname label ends in a dash", func(s *Seed) { s.Hostname = "web-.org" }, []string{`label "web-": use 1 to 63`}},
		{"hostname all digits", func(s *Seed) { s.Hostname = "123.example.org" }, []string{"all digits: start the name with a letter"}},
		{"hostname label too long", func(s *Seed) { s.Hostname = strings.Repeat("a", 64) }, []string{"use 1 to 63 letters"}},
		{"hostname injects YAML", func(s *Seed) { s.Hostname = "x\nruncmd: [reboot]" }, []string{`seed Hostname "x\nruncmd: [reboot]"`}},
		{"key not a key", func(s *Seed) { s.SSHKeys = []string{"hello"} }, []string{"seed SSHKeys[0]", "not an authorized_keys line"}},
		{"two keys in one", func(s *Seed) { s.SSHKeys = []string{aliceKey + "\n" + ecdsaKey} }, []string{"seed SSHKeys[0]: more than one line"}},
		{"second key bad", func(s *Seed) { s.SSHKeys = []string{aliceKey, "ssh-ed25519 AAAA"} }, []string{"seed SSHKeys[1]"}},
		{"user upper-case", func(s *Seed) { s.User = "Alice" }, []string{`seed User "Alice": use 1 to 32 lower-case`}},
		{"user root", func(s *Seed) { s.User = "root" }, []string{`seed User "root": a system account`}},
		{"no MAC", func(s *Seed) { s.NIC.MAC = nil }, []string{"seed NIC.MAC: empty"}},
		{"long MAC", func(s *Seed) { s.NIC.MAC = mustMAC("00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01") }, []string{"20 bytes: want an Ethernet (6-byte)"}},
		{"multicast MAC", func(s *Seed) { s.NIC.MAC = mustMAC("01:00:5e:00:00:01") }, []string{"a multicast address: clear the lowest bit"}},
		{"no NIC name", func(s *Seed) { s.NIC.Name = "" }, []string{"seed NIC.Name: empty: set the interface's name, e.g. eth0"}},
		{"NIC name too long", func(s *Seed) { s.NIC.Name = "averyverylongname" }, []string{"17 characters: use at most 15"}},
		{"NIC name with a slash", func(s *Seed) { s.NIC.Name = "eth/0" }, []string{`seed NIC.Name "eth/0": use letters`}},
		{"network address", func(s *Seed) { s.NIC.Address = netip.MustParsePrefix("10.0.0.0/24") }, []string{"the network's own address", "e.g. 10.0.0.1"}},
		{"broadcast address", func(s *Seed) { s.NIC.Address = netip.MustParsePrefix("10.0.0.255/24") }, []string{"the network's broadcast address"}},
		{"loopback address", func(s *Seed) { s.NIC.Address, s.NIC.Gateway = netip.MustParsePrefix("127.0.0.2/8"), netip.Addr{} }, []string{"not a unicast address"}},
		{"mapped address", func(s *Seed) { s.NIC.Address = netip.MustParsePrefix("::ffff:10.0.0.5/120") }, []string{"an IPv4-mapped IPv6 address"}},
		{"gateway outside", func(s *Seed) { s.NIC.Gateway = netip.MustParseAddr("10.0.1.1") }, []string{"seed NIC.Gateway 10.0.1.1: outside NIC.Address's network 10.0.0.0/24"}},
		{"gateway is self", func(s *Seed) { s.NIC.Gateway = netip.MustParseAddr("10.0.0.5") }, []string{"the VM's own address"}},
		{"gateway other family", func(s *Seed) { s.NIC.Gateway = netip.MustParseAddr("2001:db8::1") }, []string{"not of NIC.Address 10.0.0.5/24's family"}},
		{"gateway without address", func(s *Seed) { s.NIC.Address = netip.Prefix{} }, []string{"seed NIC.Gateway 10.0.0.1: without NIC.Address"}},
		{"MTU too small", func(s *Seed) { s.NIC.MTU = 67 }, []string{"seed NIC.MTU 67: want 68 to 65535, or 0"}},
		{"IPv6 MTU too small", func(s *Seed) {
			s.NIC.Address, s.NIC.Gateway, s.NIC.MTU = netip.MustParsePrefix("2001:db8::5/64"), netip.Addr{}, 1279
		}, []string{"seed NIC.MTU 1279: want 1280 to 65535"}},
		{"search domains", func(s *Seed) { s.NIC.Search = []string{"blue.internal", "example.org"} }, nil},
		{"bad search domains", func(s *Seed) { s.NIC.Search = []string{"", "blue..internal", "-x.internal", "a b", "blue.internal."} },
			[]string{`seed NIC.Search[0] ""`, `seed NIC.Search[1] "blue..internal"`, `seed NIC.Search[2] "-x.internal"`,
				`seed NIC.Search[3] "a b"`, `seed NIC.Search[4] "blue.internal."`}},
		{"too many search domains", func(s *Seed) { s.NIC.Search = strings.Split("a b c d e f g", " ") }, []string{"seed NIC.Search: 7 domains"}},
		{"bad DNS", func(s *Seed) { s.NIC.DNS = []netip.Addr{{}, netip.MustParseAddr("0.0.0.0")} }, []string{"seed NIC.DNS[0] invalid IP", "seed NIC.DNS[1] 0.0.0.0"}},
		{"every problem at once", func(s *Seed) { *s = Seed{} }, []string{
			"seed InstanceID: empty", "seed Hostname: empty", "seed NIC.MAC: empty", "seed NIC.Name: empty",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSeed()
			tt.change(&s)
			err := s.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("Validate() = %q\nwant, in order: %q", msg, tt.want)
				}
				rest = rest[i+len(w):]
			}
			// The documents refuse what Validate refuses.
			if _, derr := s.Files(); derr == nil {
				t.Error("Files() succeeded on an invalid seed")
			}
			if _, derr := s.ISO(); derr == nil {
				t.Error("ISO() succeeded on an invalid seed")
			}
		})
	}
}

// goldenSeeds are rendered into testdata/<name>/.
var goldenSeeds = map[string]func() Seed{
	"static": validSeed,
	"fqdn-user-two-keys": func() Seed {
		s := validSeed()
		s.Hostname = "web1.example.org"
		s.User = "alice"
		s.SSHKeys = []string{aliceKey, ecdsaKey}
		return s
	},
	"host-key": func() Seed {
		s := validSeed()
		s.HostKey = testKey("ed25519")
		return s
	},
	"dhcp-minimal": func() Seed {
		return Seed{InstanceID: "i-1", Hostname: "db", NIC: NIC{MAC: mustMAC("52:54:00:ab:cd:ef"), Name: "ens3"}}
	},
	"no-gateway": func() Seed {
		s := validSeed()
		s.NIC.Gateway, s.NIC.DNS, s.NIC.MTU = netip.Addr{}, nil, 0
		return s
	},
	"search-domain": func() Seed {
		s := validSeed()
		s.NIC.Search = []string{"blue.internal"}
		return s
	},
	"ipv6": func() Seed {
		s := validSeed()
		s.NIC.Address = netip.MustParsePrefix("2001:db8::5/64")
		s.NIC.Gateway = netip.MustParseAddr("2001:db8::1")
		s.NIC.DNS = []netip.Addr{netip.MustParseAddr("2001:db8::53")}
		return s
	},
	// Values that PyYAML (YAML 1.1) would take for another type unquoted,
	// and a key comment full of YAML syntax.
	"yaml-lookalikes": func() Seed {
		s := validSeed()
		s.InstanceID = "1:30"
		s.Hostname = "yes"
		s.NIC.Name = "on"
		s.NIC.MAC = mustMAC("12:34:56:00:00:59")
		s.SSHKeys = []string{aliceKey[:strings.LastIndexByte(aliceKey, ' ')] + ` x" ]} &a *b !!int #c: 'd' - {e: f}`}
		return s
	},
}

// forEachGoldenSeed runs fn as a subtest for each golden seed, with the
// seed's name, the seed and its documents.
func forEachGoldenSeed(t *testing.T, fn func(t *testing.T, name string, s Seed, files map[string][]byte)) {
	for name, seed := range goldenSeeds {
		t.Run(name, func(t *testing.T) {
			s := seed()
			files, err := s.Files()
			if err != nil {
				t.Fatal(err)
			}
			fn(t, name, s, files)
		})
	}
}

func TestDocumentsGolden(t *testing.T) {
	forEachGoldenSeed(t, func(t *testing.T, name string, s Seed, files map[string][]byte) {
		files["cmdline"] = []byte(KernelCmdline(s, "console=ttyS0") + "\n")
		for file, got := range files {
			path := filepath.Join("testdata", name, file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to make it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs from %s (-want +got):\n%s", file, path, diff)
			}
		}
	})
}

// TestDocumentsParse reads the documents back as YAML and checks that
// every value keeps its type and text, however it looks.
func TestDocumentsParse(t *testing.T) {
	forEachGoldenSeed(t, func(t *testing.T, _ string, s Seed, files map[string][]byte) {
		var md map[string]any
		if err := yaml.Unmarshal(files[MetaDataFile], &md); err != nil {
			t.Fatalf("meta-data: %v", err)
		}
		wantMD := map[string]any{"instance-id": s.InstanceID, "local-hostname": s.Hostname}
		if diff := cmp.Diff(wantMD, md); diff != "" {
			t.Errorf("meta-data (-want +got):\n%s", diff)
		}

		ud := files[UserDataFile]
		if !strings.HasPrefix(string(ud), "#cloud-config\n") {
			t.Errorf("user-data does not start with #cloud-config:\n%s", ud)
		}
		var cc map[string]any
		if err := yaml.Unmarshal(ud, &cc); err != nil {
			t.Fatalf("user-data: %v", err)
		}
		wantCC := map[string]any{"hostname": s.shortName()}
		if s.Hostname != s.shortName() {
			wantCC["fqdn"] = s.Hostname
		}
		if s.User != "" {
			wantCC["user"] = map[string]any{"name": s.User}
		}
		if s.HostKey != "" {
			pub, err := s.HostKey.PublicKey()
			if err != nil {
				t.Fatal(err)
			}
			wantCC["ssh_keys"] = map[string]any{"ed25519_private": string(s.HostKey),
				"ed25519_public": strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))}
		}
		if len(s.SSHKeys) > 0 {
			var keys []any
			for _, k := range s.SSHKeys {
				keys = append(keys, k)
			}
			wantCC["ssh_authorized_keys"] = keys
		}
		if diff := cmp.Diff(wantCC, cc); diff != "" {
			t.Errorf("user-data (-want +got):\n%s", diff)
		}

		var nc struct {
			Version   int
			Ethernets map[string]map[string]any
		}
		if err := yaml.Unmarshal(files[NetworkConfigFile], &nc); err != nil {
			t.Fatalf("network-config: %v", err)
		}
		eth, ok := nc.Ethernets[s.NIC.Name]
		if nc.Version != 2 || len(nc.Ethernets) != 1 || !ok {
			t.Fatalf("network-config: want version 2 and one ethernet %q, got %+v", s.NIC.Name, nc)
		}
		if got := eth["match"]; !cmp.Equal(got, map[string]any{"macaddress": s.NIC.MAC.String()}) {
			t.Errorf("match = %v, want macaddress %s", got, s.NIC.MAC)
		}
		if eth["set-name"] != s.NIC.Name {
			t.Errorf("set-name = %#v, want %q", eth["set-name"], s.NIC.Name)
		}
	})
}

// The documents are double-quoted wherever the seed supplies a string, so
// that PyYAML's YAML 1.1 cannot read 1:30 as 90, yes and on as true, or
// 12:34:56:00:00:59 as a number.
func TestDocumentsQuoteStrings(t *testing.T) {
	files, err := goldenSeeds["yaml-lookalikes"]().Files()
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]string{
		MetaDataFile:      {`instance-id: "1:30"`, `local-hostname: "yes"`},
		UserDataFile:      {`hostname: "yes"`},
		NetworkConfigFile: {`"on":`, `macaddress: "12:34:56:00:00:59"`, `set-name: "on"`},
	} {
		for _, w := range want {
			if !strings.Contains(string(files[file]), w) {
				t.Errorf("%s lacks %s:\n%s", file, w, files[file])
			}
		}
	}
}

func TestKernelCmdline(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Seed)
		extra  string
		want   string
	}{
		{"static", func(*Seed) {}, "console=ttyS0",
			"ip=10.0.0.5::10.0.0.1:255.255.255.0:web1:eth0:none:1370 ifname=eth0:52:54:00:12:34:56 nameserver=10.0.0.1 nameserver=9.9.9.9 console=ttyS0"},
		{"no gateway, no MTU, no DNS, no extra", func(s *Seed) { s.NIC.Gateway, s.NIC.MTU, s.NIC.DNS = netip.Addr{}, 0, nil }, "  ",
			"ip=10.0.0.5:::255.255.255.0:web1:eth0:none ifname=eth0:52:54:00:12:34:56"},
		{"odd prefix", func(s *Seed) {
			s.NIC.Address, s.NIC.Gateway = netip.MustParsePrefix("172.16.5.9/20"), netip.MustParseAddr("172.16.0.1")
		}, "",
			"ip=172.16.5.9::172.16.0.1:255.255.240.0:web1:eth0:none:1370 ifname=eth0:52:54:00:12:34:56 nameserver=10.0.0.1 nameserver=9.9.9.9"},
		{"ipv6", func(s *Seed) {
			s.NIC.Address, s.NIC.Gateway = netip.MustParsePrefix("2001:db8::5/64"), netip.MustParseAddr("2001:db8::1")
			s.NIC.DNS = []netip.Addr{netip.MustParseAddr("2001:db8::53")}
		}, "quiet",
			"ip=[2001:db8::5]::[2001:db8::1]:64:web1:eth0:none:1370 ifname=eth0:52:54:00:12:34:56 nameserver=[2001:db8::53] quiet"},
		{"dhcp", func(s *Seed) { s.NIC.Address, s.NIC.Gateway, s.NIC.DNS = netip.Prefix{}, netip.Addr{}, nil }, "ro",
			"ip=eth0:dhcp:1370 ifname=eth0:52:54:00:12:34:56 ro"},
		{"fqdn", func(s *Seed) { s.Hostname = "web1.example.org"; s.NIC.DNS = nil }, "",
			"ip=10.0.0.5::10.0.0.1:255.255.255.0:web1.example.org:eth0:none:1370 ifname=eth0:52:54:00:12:34:56"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSeed()
			tt.change(&s)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := KernelCmdline(s, tt.extra); got != tt.want {
				t.Errorf("KernelCmdline =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// The host key is a secret: no error, and no printed seed, shows it.
func TestHostKeyNeverShown(t *testing.T) {
	key := testKey("ed25519")
	bad := validSeed()
	bad.HostKey, bad.Hostname = key, "-bad-"
	corrupt := validSeed()
	corrupt.HostKey = key[:len(key)-40] + "AAAA\n-----END OPENSSH PRIVATE KEY-----\n"
	for name, text := range map[string]string{
		"error of a seed with a host key": fmt.Sprint(bad.Validate()),
		"error of a corrupt host key":     fmt.Sprint(corrupt.Validate()),
		"seed printed with %v":            fmt.Sprintf("%v", bad),
		"seed printed with %+v":           fmt.Sprintf("%+v", bad),
		"seed printed with %#v":           fmt.Sprintf("%#v", bad),
	} {
		if strings.Contains(text, "PRIVATE KEY") || strings.Contains(text, "b3BlbnNzaC1rZXkt") {
			t.Errorf("%s shows the private key: %s", name, text)
		}
	}
	if !strings.Contains(fmt.Sprint(corrupt.Validate()), "seed HostKey") {
		t.Errorf("a corrupt host key passes: %v", corrupt.Validate())
	}
}
