package tui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
)

// TestTmuxAgainstLab drives the built binary in a real terminal (tmux)
// against `butter lab up`: create a network and a VM through the forms,
// see them on the dashboard, press c, run a command in the guest, escape
// with Ctrl+], and find the dashboard intact. It needs root (the lab's
// namespaces) and tmux; without them it skips with the reason, and with
// CI=true it fails instead.
func TestTmuxAgainstLab(t *testing.T) {
	skip := func(format string, a ...any) {
		t.Helper()
		testbed.Require(t, false, fmt.Sprintf(format, a...))
	}
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		skip("needs Linux and root for `butter lab up`")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		skip("needs tmux (apt-get install tmux)")
	}
	if testing.Short() {
		t.Skip("a lab takes minutes; not in -short")
	}
	// A lab of its own (name and underlay), so it never meets the user's
	// lab or another test's; its machines are left out of the inventory,
	// to be added through the form.
	labName := testbed.ClaimLab(t, "tui")
	underlay := testbed.Underlay(labName)
	dir := t.TempDir()
	bin := filepath.Join(dir, "butter")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	home := filepath.Join(dir, "home")
	config := filepath.Join(home, ".config")
	env := append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+config, "BUTTER_INVENTORY=", "SSH_AUTH_SOCK=")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	up := exec.CommandContext(ctx, bin, "lab", "up", "--name", labName, "--underlay", underlay.String(),
		"--machines", "2", "--add=false", "--demo=false", "--open=false")
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		skip("butter lab up does not work here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		down := exec.Command(bin, "lab", "down", "--name", labName)
		down.Env = env
		_ = down.Run()
	})
	labDir := filepath.Join(config, "butter", "lab-"+labName)
	// The operator's key, where the form's key menu finds it.
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id_ed25519", "id_ed25519.pub"} {
		b, err := os.ReadFile(filepath.Join(labDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".ssh", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	session := "butter-tui-test"
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Standard error goes to a file: the terminal stays the dashboard's,
	// and a goroutine dump (SIGQUIT) can be read back when it hangs.
	stderrFile := filepath.Join(dir, "butter.stderr")
	cmd := "env HOME=" + home + " XDG_CONFIG_HOME=" + config + " SSH_AUTH_SOCK= GOTRACEBACK=all " + bin +
		" --inventory " + filepath.Join(labDir, "inventory.yaml") + " 2>" + stderrFile
	tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", cmd)
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", session).Run() })
	screen := func() string { return tmux("capture-pane", "-p", "-t", session) }
	wait := func(what string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if strings.Contains(screen(), what) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("no %q on the screen after %v:\n%s", what, d, screen())
	}
	waitFor := func(what string, d time.Duration) bool {
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if strings.Contains(screen(), what) {
				return true
			}
		}
		return false
	}
	typ := func(text string) {
		tmux("send-keys", "-t", session, "-l", text)
		time.Sleep(300 * time.Millisecond)
	}
	keys := func(ks ...string) {
		for _, k := range ks {
			tmux("send-keys", "-t", session, k)
			time.Sleep(300 * time.Millisecond)
		}
	}

	// selectItem moves a menu's cursor down to item, a bounded number of
	// times: a menu without it fails the test, naming what it waited for.
	selectItem := func(item, menu string) {
		for range 20 {
			if s := screen(); strings.Contains(s, "> "+item) || strings.Contains(s, "› "+item) {
				return
			}
			keys("Down")
		}
		t.Fatalf("no %q in %s after 20 moves down:\n%s", item, menu, screen())
	}

	// First run: the welcome; add a machine through the form.
	wait("Welcome to butter", time.Minute)
	keys("Enter")
	wait("Add a machine", 10*time.Second)
	typ("m1")
	keys("Enter")
	typ(sim.HostAddr(underlay, 1).Addr().String())
	keys("Enter", "Enter", "Enter") // address; user (root) and port (22) as proposed
	wait("SSH key", 10*time.Second)
	selectItem(filepath.Join(home, ".ssh", "id_ed25519"), "the SSH key menu")
	keys("Enter", "Enter")
	wait("machine m1 added", 3*time.Minute)
	wait("1 online", time.Minute)
	keys("Escape", "2", "a")
	wait("Create a network", 10*time.Second)
	typ("tnet")
	keys("Enter", "Enter", "Enter", "Enter", "Enter") // name, subnet, tunnel, egress, machines
	wait("network tnet", 2*time.Minute)
	keys("Escape", "3", "a")
	wait("Create a VM", 10*time.Second)
	typ("tvm")
	keys("Enter", "Enter", "Enter") // name, network, machine
	// The image menu: the catalog, then the lab's tiny guest.
	selectItem("tiny guest", "the image menu")
	keys("Enter", "Enter") // image, size
	wait("vm tvm is running", 5*time.Minute)
	keys("Escape")
	wait("tvm", 10*time.Second)
	keys("/")
	typ("tvm")
	keys("Enter", "c")
	// The banner, then the replayed boot (which may scroll it away).
	wait("host=tvm addr=", time.Minute)
	time.Sleep(3 * time.Second)
	keys("Enter")
	typ("echo hi-$((6*7))")
	keys("Enter")
	if !waitFor("hi-42", time.Minute) {
		vms := exec.Command(bin, "--inventory", filepath.Join(labDir, "inventory.yaml"), "vm", "list")
		vms.Env = env
		out, _ := vms.CombinedOutput()
		state, _ := exec.Command("nsenter", "--net=/run/netns/"+labName+"-m1", "--mount=/run/butter-lab/"+labName+"/ns/m1", "--",
			"sh", "-c", "virsh -c qemu:///system domstate tvm --reason; tail -5 /var/log/libvirt/qemu/tvm.log; tail -20 /var/log/libvirt/butter/tvm.console.log").CombinedOutput()
		t.Fatalf("no hi-42 from the guest within a minute:\n%s\nvm list:\n%s\non the machine:\n%s", screen(), out, state)
	}
	keys("C-]")
	if !waitFor("VMs (", 20*time.Second) {
		// Hung: ask the program for its goroutines, for the failure.
		pid := strings.TrimSpace(tmux("display-message", "-p", "-t", session, "#{pane_pid}"))
		exec.Command("pkill", "-QUIT", "-P", pid).Run()
		exec.Command("kill", "-QUIT", pid).Run()
		time.Sleep(2 * time.Second)
		dump, _ := os.ReadFile(stderrFile)
		t.Fatalf("no dashboard 20s after Ctrl+]:\n%s\nbutter's standard error:\n%s", screen(), dump)
	}
	s := screen()
	for _, want := range []string{"tvm", "running", "tnet", "detached from tvm"} {
		if !strings.Contains(s, want) {
			t.Errorf("the dashboard after the console lacks %q:\n%s", want, s)
		}
	}
	keys("q")
}
