package cloud

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var sshProxy = []string{"/usr/local/bin/butter", "--inventory", "/home/ann/.config/butter/inventory.yaml"}

func TestSSHArgs(t *testing.T) {
	base := SSHTarget{Name: "web", User: "debian", Address: netip.MustParseAddr("10.20.0.2"),
		KnownHosts: "/home/ann/.config/butter/inventory.yaml.known_hosts"}
	common := []string{
		"-o", "ProxyCommand=/usr/local/bin/butter --inventory /home/ann/.config/butter/inventory.yaml vm proxy web",
		"-o", `UserKnownHostsFile="/home/ann/.config/butter/inventory.yaml.known_hosts"`,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "HostKeyAlias=web",
		"-o", "HostKeyAlgorithms=ssh-ed25519",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "CheckHostIP=no",
	}
	tests := []struct {
		name    string
		target  func(*SSHTarget)
		proxy   []string
		command []string
		want    []string
		wantErr string
	}{
		{"login", func(*SSHTarget) {}, sshProxy, nil,
			append(append([]string{}, common...), "-o", "User=debian", "--", "web"), ""},
		{"a command, options and all, stays the command", func(*SSHTarget) {}, sshProxy, []string{"-v", "ls", "-l"},
			append(append([]string{}, common...), "-o", "User=debian", "--", "web", "-v", "ls", "-l"), ""},
		{"no user known: ssh's own", func(t *SSHTarget) { t.User = "" }, sshProxy, []string{"hostname"},
			append(append([]string{}, common...), "--", "web", "hostname"), ""},
		{"the caller's options come after butter's", func(t *SSHTarget) { t.Extra = []string{"BatchMode=yes", "StrictHostKeyChecking=no"} },
			sshProxy, []string{"true"}, append(append([]string{}, common...), "-o", "User=debian",
				"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "--", "web", "true"), ""},
		{"paths with spaces, quotes and percent signs", func(t *SSHTarget) { t.KnownHosts = "/tmp/a b%c/k" },
			[]string{"/opt/my butter/butter", "--inventory", "/tmp/it's%d/inv.yaml"}, nil, []string{
				"-o", `ProxyCommand='/opt/my butter/butter' --inventory '/tmp/it'\''s%%d/inv.yaml' vm proxy web`,
				"-o", `UserKnownHostsFile="/tmp/a b%%c/k"`,
				"-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=web", "-o", "HostKeyAlgorithms=ssh-ed25519",
				"-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no", "-o", "User=debian", "--", "web",
			}, ""},
		{"a double quote in a path", func(t *SSHTarget) { t.KnownHosts = `/tmp/a"b/k` }, sshProxy, nil, nil,
			`vm "web": "/tmp/a\"b/k": a path with a double quote or a line break`},
		{"a line break in the binary's path", func(*SSHTarget) {}, []string{"/tmp/a\nb/butter"}, nil, nil,
			"a path with a double quote or a line break"},
		{"no proxy", func(*SSHTarget) {}, nil, nil, nil, `vm "web": no proxy command`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := base
			tt.target(&target)
			got, err := target.SSHArgs(tt.proxy, tt.command)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SSHArgs = %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SSHArgs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteSSHConfig(t *testing.T) {
	targets := []SSHTarget{
		{Name: "web", User: "debian", Address: netip.MustParseAddr("10.20.0.2"), KnownHosts: "/k/inventory.yaml.known_hosts"},
		{Name: "db", Address: netip.MustParseAddr("10.20.0.3"), KnownHosts: "/k/inventory.yaml.known_hosts"},
	}
	var b strings.Builder
	if err := WriteSSHConfig(&b, targets, sshProxy); err != nil {
		t.Fatal(err)
	}
	want := `# vm web at 10.20.0.2
Host web
  ProxyCommand /usr/local/bin/butter --inventory /home/ann/.config/butter/inventory.yaml vm proxy web
  UserKnownHostsFile "/k/inventory.yaml.known_hosts"
  GlobalKnownHostsFile /dev/null
  HostKeyAlias web
  HostKeyAlgorithms ssh-ed25519
  StrictHostKeyChecking yes
  UpdateHostKeys no
  CheckHostIP no
  User debian

# vm db at 10.20.0.3
Host db
  ProxyCommand /usr/local/bin/butter --inventory /home/ann/.config/butter/inventory.yaml vm proxy db
  UserKnownHostsFile "/k/inventory.yaml.known_hosts"
  GlobalKnownHostsFile /dev/null
  HostKeyAlias db
  HostKeyAlgorithms ssh-ed25519
  StrictHostKeyChecking yes
  UpdateHostKeys no
  CheckHostIP no
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("ssh-config (-want +got):\n%s", diff)
	}
	var empty strings.Builder
	if err := WriteSSHConfig(&empty, nil, sshProxy); err != nil || empty.Len() != 0 {
		t.Errorf("no VMs: %q, %v; want nothing", empty.String(), err)
	}
}

// The real OpenSSH client reads the options as meant (`ssh -G` prints the
// configuration it would use, connecting nowhere): the Host block and the
// -o arguments alike, with spaces, quotes and percent signs in the paths.
func TestSSHReadsTheOptions(t *testing.T) {
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no OpenSSH client (openssh-client): " + err.Error())
	}
	dir := t.TempDir()
	target := SSHTarget{Name: "web", User: "debian", Address: netip.MustParseAddr("10.20.0.2"),
		KnownHosts: filepath.Join(dir, "a b%c", "inventory.yaml.known_hosts")}
	proxy := []string{filepath.Join(dir, "my butter", "butter"), "--inventory", filepath.Join(dir, "it's", "inv.yaml")}
	wantLines := []string{
		"user debian",
		"hostkeyalias web",
		"stricthostkeychecking true",
		"hostkeyalgorithms ssh-ed25519",
		"globalknownhostsfile /dev/null",
		"userknownhostsfile " + target.KnownHosts,
		// Printed before its %-tokens are expanded at connect time.
		`proxycommand '` + dir + `/my butter/butter' --inventory '` + dir + `/it'\''s/inv.yaml' vm proxy web`,
	}
	var cfg strings.Builder
	if err := WriteSSHConfig(&cfg, []SSHTarget{target}, proxy); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "config")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// The caller's options come after butter's: one that would weaken
	// the check does not.
	withExtra := target
	withExtra.Extra = []string{"StrictHostKeyChecking=no", "BatchMode=yes"}
	args, err := withExtra.SSHArgs(proxy, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, argv := range map[string][]string{
		"ssh-config": {"-G", "-F", cfgFile, "web"},
		"vm ssh":     append([]string{"-G", "-F", "/dev/null"}, args...),
		// The negative control: the same host without butter's options.
		"neither": {"-G", "-F", "/dev/null", "web"},
	} {
		out, err := exec.Command(ssh, argv...).Output()
		if err != nil {
			t.Fatalf("%s: ssh -G: %v", name, err)
		}
		if name == "vm ssh" && !strings.Contains(string(out), "\nbatchmode yes\n") {
			t.Errorf("vm ssh: the caller's BatchMode=yes is not in effect")
		}
		have := map[string]bool{}
		for l := range strings.Lines(string(out)) {
			have[strings.TrimSpace(l)] = true
		}
		for _, w := range wantLines {
			if have[w] == (name == "neither") {
				t.Errorf("%s: ssh -G has %q: %v", name, w, have[w])
			}
		}
	}
}
