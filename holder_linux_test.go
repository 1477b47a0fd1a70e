package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cli"
	"github.com/butter-cloud/butter/inventory"
)

// holderIdle is the holder's idle timeout in TestHolder: long enough for
// the verbs between, short enough to wait out.
const holderIdle = 6 * time.Second

// TestHolder drives the connection holder through the real binary on a
// lab of three machines over real SSH: a second verb rides the first's SSH
// connections (no new login in any machine's sshd log); the socket is
// 0600 in a 0700 folder; a changed
// inventory entry or a changed known_hosts is dialed anew; an away
// machine is reported away as without the holder; the holder exits after
// its idle timeout and takes its socket along.
func TestHolder(t *testing.T) {
	e := upCloud(t, "hd", 3)
	runtime := t.TempDir()
	env := append(append([]string(nil), e.env...), cli.HolderEnv+"=on", cli.HolderIdleEnv+"="+holderIdle.String(),
		"XDG_RUNTIME_DIR="+runtime)
	machines := []string{"m1", "m2", "m3"}
	// accepted counts the logins each machine's sshd has accepted.
	accepted := func() map[string]int {
		t.Helper()
		n := map[string]int{}
		for _, m := range machines {
			out, err := e.runner(m)(e.ctx, "cat", "/run/butter-lab-sshd/sshd.log")
			if err != nil {
				t.Fatal(err)
			}
			n[m] = strings.Count(string(out), "Accepted publickey")
		}
		return n
	}
	verb := func(args ...string) result {
		t.Helper()
		r := e.callEnv(env, append([]string{"--inventory", e.lab.Inventory, "--debug"}, args...)...)
		if r.code != 0 {
			t.Fatalf("want exit 0: %s", r)
		}
		return r
	}
	reused := func(r result) int {
		return strings.Count(r.stderr, "holder used") - strings.Count(r.stderr, "reused=false")
	}

	first := verb("machine", "list")
	if n := strings.Count(first.stderr, "holder used"); n != len(machines) {
		t.Fatalf("first list: the holder served %d machines, want %d:\n%s", n, len(machines), first.stderr)
	}
	before := accepted()
	second := verb("machine", "list")
	after := accepted()
	if reused(second) != len(machines) {
		t.Errorf("second list: %d machines on held connections, want %d:\n%s", reused(second), len(machines), second.stderr)
	}
	for _, m := range machines {
		if after[m] != before[m] {
			t.Errorf("%s: sshd accepted %d logins during the second list, want none", m, after[m]-before[m])
		}
	}
	net := verb("network", "create", "hn")
	if reused(net) != len(machines) || accepted()["m1"] != before["m1"] {
		t.Errorf("network create did not ride the held connections:\n%s", net.stderr)
	}
	t.Logf("machine list: first %s (holder started, dials), second %s; network create across 3: %s",
		first.took.Round(time.Millisecond), second.took.Round(time.Millisecond), net.took.Round(time.Millisecond))
	t.Logf("second list's log:\n%s", second.stderr)

	// vm create: the first uploads the kernel and initrd over a connection
	// of its own; the second finds them (`helper image has` through the
	// holder) and logs in nowhere.
	create := func(name string) result {
		return verb("vm", "create", name, "--machine", "m1", "--network", "hn", "--image", e.lab.TinyImage,
			"--cpus", "1", "--memory", "128M")
	}
	create("hv1")
	before = accepted()
	vm := create("hv2")
	if after := accepted(); after["m1"] != before["m1"] || !strings.Contains(vm.stderr, "holder used") {
		t.Errorf("a second vm create logged in %d times:\n%s", after["m1"]-before["m1"], vm.stderr)
	}
	t.Logf("vm create with its image cached: %s", vm.took.Round(time.Millisecond))
	verb("vm", "remove", "hv1")
	verb("vm", "remove", "hv2")

	// The socket: 0600, in a 0700 folder, and nobody else gets in.
	socks, _ := filepath.Glob(filepath.Join(runtime, "butter", "*.sock"))
	if len(socks) != 1 {
		t.Fatalf("holder sockets in %s: %v, want one", runtime, socks)
	}
	sock := socks[0]
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("holder socket %s: %v %v, want a socket of mode 0600", sock, fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("holder folder: %v %v, want 0700", fi.Mode(), err)
	}
	// Another uid is refused by these modes and by the holder itself:
	// holder's TestPeerRefused.

	// A changed entry (m1's identity file, the same key at another path)
	// is dialed again; the others ride on.
	key := filepath.Join(t.TempDir(), "other-key")
	if data, err := os.ReadFile(e.lab.Key); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(key, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := inventory.Update(e.ctx, e.lab.Inventory, func(inv *inventory.Inventory) error {
		m, _ := inv.Machine("m1")
		m.Identity = key
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before = accepted()
	changed := verb("machine", "list")
	after = accepted()
	if after["m1"] != before["m1"]+1 || after["m2"] != before["m2"] || after["m3"] != before["m3"] {
		t.Errorf("after m1's entry changed: new logins %v, want one on m1 only:\n%s", diff(after, before), changed.stderr)
	}
	// A changed known_hosts (a host key trusted or revoked) is dialed
	// again everywhere.
	kh := e.lab.KnownHosts
	if f, err := os.OpenFile(kh, os.O_APPEND|os.O_WRONLY, 0); err != nil {
		t.Fatalf("lab known_hosts: %v", err)
	} else {
		f.WriteString("# touched by TestHolder\n")
		f.Close()
	}
	before = accepted()
	verb("machine", "list")
	after = accepted()
	for _, m := range machines {
		if after[m] != before[m]+1 {
			t.Errorf("after known_hosts changed: %s had %d new logins, want 1", m, after[m]-before[m])
		}
	}

	// Away: m3's cable pulled. The list says so, as without the holder.
	e.unplug("m3", false)
	away := e.callEnv(env, "--inventory", e.lab.Inventory, "--debug", "machine", "list", "--json")
	// The holder that answered, found now: the list without it that
	// follows can take longer than the holder's idle timeout (7 s in a
	// CI run, SSH logins paying a slow shell start), and it may be gone
	// after it, as it should.
	pid := holderPid(t, sock)
	plain := e.callEnv(e.env, "--inventory", e.lab.Inventory, "machine", "list", "--json")
	e.unplug("m3", true)
	rowOf := func(out string) string {
		for line := range strings.SplitSeq(out, "{") {
			if strings.Contains(line, `"name": "m3"`) {
				return line
			}
		}
		return ""
	}
	if away.code != plain.code || !strings.Contains(rowOf(away.stdout), `"offline"`) ||
		strings.ReplaceAll(rowOf(away.stdout), " ", "") != strings.ReplaceAll(rowOf(plain.stdout), " ", "") {
		t.Errorf("m3 away: with the holder exit %d, row %q; without exit %d, row %q\n%s", away.code, rowOf(away.stdout),
			plain.code, rowOf(plain.stdout), away.stderr)
	}
	t.Logf("machine list with m3 away: holder %s, without %s", away.took.Round(time.Millisecond), plain.took.Round(time.Millisecond))

	// Idle: the holder exits and removes its socket.
	if pid == 0 {
		t.Fatal("no holder process found")
	}
	deadline := time.Now().Add(holderIdle + 10*time.Second)
	for {
		_, serr := os.Stat(sock)
		alive := syscall.Kill(pid, 0) == nil && holderPid(t, sock) == pid
		if !alive && os.IsNotExist(serr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("holder %d still there (alive %v, socket %v) %s after its idle timeout %s", pid, alive, serr,
				time.Since(deadline.Add(-holderIdle-10*time.Second)).Round(time.Second), holderIdle)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func diff(after, before map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}

// holderPid is the pid of the `butter holder --socket sock` process (0:
// none).
func holderPid(t *testing.T, sock string) int {
	t.Helper()
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) >= 4 && args[1] == "holder" && args[2] == "--socket" && args[3] == sock {
			return pid
		}
	}
	return 0
}
