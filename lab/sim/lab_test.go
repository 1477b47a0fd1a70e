package sim

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigWithDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config
		wantErr []string // substrings, all must appear
	}{
		{
			name: "defaults",
			cfg:  Config{Name: "ch1", Machines: 3},
			want: Config{Name: "ch1", Machines: 3, Underlay: DefaultUnderlay, MTU: 1500},
		},
		{
			name: "own underlay",
			cfg:  Config{Name: "a", Machines: 1, Underlay: netip.MustParsePrefix("192.168.7.0/29"), MTU: 9000},
			want: Config{Name: "a", Machines: 1, Underlay: netip.MustParsePrefix("192.168.7.0/29"), MTU: 9000},
		},
		{
			name:    "every problem at once",
			cfg:     Config{Name: "Bad_Name", Machines: 0, MTU: 100},
			wantErr: []string{`lab name "Bad_Name"`, "0 machines", "MTU 100"},
		},
		{
			name:    "helper prefix",
			cfg:     Config{Name: "btlab", Machines: 1},
			wantErr: []string{`must not start with "bt"`},
		},
		{
			name:    "too long for link names",
			cfg:     Config{Name: "abcdefghi", Machines: 1},
			wantErr: []string{"1 to 8"},
		},
		{
			name:    "underlay too small",
			cfg:     Config{Name: "a", Machines: 6, Underlay: netip.MustParsePrefix("10.0.0.0/29")},
			wantErr: []string{"too small for 6 machines"},
		},
		{
			name:    "underlay not a network prefix",
			cfg:     Config{Name: "a", Machines: 2, Underlay: netip.MustParsePrefix("10.0.0.5/24")},
			wantErr: []string{"want an IPv4 network prefix"},
		},
		{
			name: "behind NAT",
			cfg:  Config{Name: "n", Machines: 1, NAT: 2},
			want: Config{Name: "n", Machines: 1, NAT: 2, Underlay: DefaultUnderlay, MTU: 1500, LAN: DefaultLAN},
		},
		{
			name: "behind two NAT routers",
			cfg:  Config{Name: "n", Machines: 1, NAT: 1, NAT2: 1},
			want: Config{Name: "n", Machines: 1, NAT: 1, NAT2: 1, Underlay: DefaultUnderlay, MTU: 1500, LAN: DefaultLAN, LAN2: DefaultLAN2},
		},
		{
			name:    "a second NAT router without the first",
			cfg:     Config{Name: "n", Machines: 1, NAT2: 1},
			wantErr: []string{"none behind the first"},
		},
		{
			name:    "the two LANs overlap",
			cfg:     Config{Name: "n", Machines: 1, NAT: 1, NAT2: 1, LAN2: netip.MustParsePrefix("192.168.100.0/25")},
			wantErr: []string{"overlaps the first router's LAN"},
		},
		{
			name:    "underlay too small for two routers",
			cfg:     Config{Name: "a", Machines: 5, NAT: 1, NAT2: 1, Underlay: netip.MustParsePrefix("10.0.0.0/29")},
			wantErr: []string{"too small for 5 machines and two routers"},
		},
		{
			name:    "too many machines behind the second NAT",
			cfg:     Config{Name: "n", Machines: 28, NAT: 2, NAT2: 3},
			wantErr: []string{"3 machines behind the second NAT"},
		},
		{
			name:    "LAN overlaps the underlay",
			cfg:     Config{Name: "n", Machines: 1, NAT: 1, LAN: netip.MustParsePrefix("10.250.0.0/16")},
			wantErr: []string{"overlaps the underlay"},
		},
		{
			name:    "LAN too small",
			cfg:     Config{Name: "n", Machines: 1, NAT: 3, LAN: netip.MustParsePrefix("192.168.1.0/30")},
			wantErr: []string{"too small for a router and 3 machines"},
		},
		{
			name:    "too many machines behind NAT",
			cfg:     Config{Name: "n", Machines: 30, NAT: 3},
			wantErr: []string{"3 machines behind NAT"},
		},
		{
			name:    "too many machines",
			cfg:     Config{Name: "a", Machines: 33},
			wantErr: []string{"want 1 to 32"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.withDefaults()
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("withDefaults(%+v) = nil error, want one mentioning %q", tt.cfg, tt.wantErr)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("withDefaults(%+v): %v", tt.cfg, err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("withDefaults() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostAddr(t *testing.T) {
	tests := []struct {
		prefix string
		n      int
		want   string
	}{
		{"10.250.0.0/24", 1, "10.250.0.1/24"},
		{"10.250.0.0/24", 254, "10.250.0.254/24"},
		{"10.250.0.0/16", 300, "10.250.1.44/16"},
		{"192.168.7.8/29", 3, "192.168.7.11/29"},
	}
	for _, tt := range tests {
		got := HostAddr(netip.MustParsePrefix(tt.prefix), tt.n)
		if got.String() != tt.want {
			t.Errorf("HostAddr(%s, %d) = %s, want %s", tt.prefix, tt.n, got, tt.want)
		}
	}
}

func TestNamesFitLinks(t *testing.T) {
	// The longest lab name and machine and probe numbers still make
	// link names of at most 15 characters.
	l := &Lab{Name: "abcdefgh"}
	m := &Machine{Name: "m32", lab: l}
	p := &Probe{Name: "p999", Port: "prb999", lab: l}
	for _, name := range []string{m.Name, p.Port, UnderlayBridge, MachineUplink} {
		if len(name) > maxIfName {
			t.Errorf("link name %q is over %d characters", name, maxIfName)
		}
	}
	if got, want := m.Netns(), "abcdefgh-m32"; got != want {
		t.Errorf("Netns() = %q, want %q", got, want)
	}
	if got, want := p.Netns(), "abcdefgh-p999"; got != want {
		t.Errorf("Netns() = %q, want %q", got, want)
	}
}

func TestMountPoints(t *testing.T) {
	info := `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
40 22 0:50 / /run/netns rw shared:5 - tmpfs tmpfs rw
41 40 0:4 net:[4026532] /run/netns/x-m1 rw shared:5 - nsfs nsfs rw
42 22 0:51 / /mnt/with\040space rw - tmpfs tmpfs rw
`
	want := []string{"/", "/proc", "/run/netns", "/run/netns/x-m1", "/mnt/with space"}
	if diff := cmp.Diff(want, MountPoints(info)); diff != "" {
		t.Errorf("MountPoints() mismatch (-want +got):\n%s", diff)
	}
}

func TestMountScript(t *testing.T) {
	s := mountScript(tools{mount: "/usr/bin/mount", umount: "/usr/bin/umount"})
	for _, want := range []string{
		"set -e\n",
		`/usr/bin/umount --lazy "$m"`,
		"/usr/bin/mount -t tmpfs -o mode=0755 butter-lab /run\n",
		"/usr/bin/mount -t tmpfs -o mode=0755 butter-lab /var/lib/butter\n",
		"/usr/bin/mount -t tmpfs -o mode=0755 butter-lab /etc/libvirt\n",
		"/usr/bin/mount -t sysfs butter-lab /sys\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("mount script lacks %q:\n%s", want, s)
		}
	}
	// /run is mounted before anything could be put under it.
	if strings.Index(s, " /run\n") > strings.Index(s, " /var/lib/butter\n") {
		t.Errorf("mount script mounts /run after /var/lib/butter:\n%s", s)
	}
}

func TestAbsProgram(t *testing.T) {
	if got := absProgram("ping"); got != "ping" {
		t.Errorf("absProgram(ping) = %q, want it left for PATH", got)
	}
	if got := absProgram("/usr/bin/ping"); got != "/usr/bin/ping" {
		t.Errorf("absProgram(/usr/bin/ping) = %q", got)
	}
	if got := absProgram("./butter"); !strings.HasPrefix(got, "/") || !strings.HasSuffix(got, "/butter") {
		t.Errorf("absProgram(./butter) = %q, want an absolute path", got)
	}
}

func TestCleanRejectsBadName(t *testing.T) {
	if err := Clean(t.Context(), "../etc"); err == nil {
		t.Fatal("Clean(../etc) = nil, want an error before touching anything")
	}
}
