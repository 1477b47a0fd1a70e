package tui

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
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
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, a...)
		}
		t.Skipf(format, a...)
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
	// The lab is one per computer (its host link is blab-butter): never
	// take over, or tear down, a lab someone else is using.
	if _, err := net.InterfaceByName("blab-butter"); err == nil {
		skip("a lab is already up on this computer (blab-butter exists); this test needs its own")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "butter")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "BUTTER_INVENTORY=")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	up := exec.CommandContext(ctx, bin, "lab", "up", "--machines", "2", "--demo=false", "--open=false")
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		skip("butter lab up does not work here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		down := exec.Command(bin, "lab", "down")
		down.Env = env
		_ = down.Run()
	})

	session := "butter-tui-test"
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cmd := "env XDG_CONFIG_HOME=" + filepath.Join(dir, "config") + " BUTTER_INVENTORY= " + bin
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

	wait("2 online", 2*time.Minute)
	keys("2", "a")
	wait("Create a network", 10*time.Second)
	typ("tnet")
	keys("Enter", "Enter", "Enter", "Enter")
	wait("network tnet", 2*time.Minute)
	keys("Escape", "3", "a")
	wait("Create a VM", 10*time.Second)
	typ("tvm")
	keys("Enter", "Enter", "Enter") // name, network, machine
	// The image menu: the catalog, then the lab's tiny guest.
	for !strings.Contains(screen(), "> tiny guest") && !strings.Contains(screen(), "› tiny guest") {
		keys("Down")
		if strings.Contains(screen(), "an https URL") && strings.Contains(screen(), "> an https URL") {
			t.Fatalf("no tiny guest in the image menu:\n%s", screen())
		}
	}
	keys("Enter", "Enter") // image, size
	wait("vm tvm is running", 5*time.Minute)
	keys("Escape")
	wait("tvm", 10*time.Second)
	keys("/")
	typ("tvm")
	keys("Enter", "c")
	wait("Ctrl+] or ~.", 30*time.Second)
	time.Sleep(3 * time.Second)
	keys("Enter")
	typ("echo hi-$((6*7))")
	keys("Enter")
	wait("hi-42", time.Minute)
	keys("C-]")
	wait("VMs (", 20*time.Second)
	s := screen()
	for _, want := range []string{"tvm", "running", "tnet", "detached from tvm"} {
		if !strings.Contains(s, want) {
			t.Errorf("the dashboard after the console lacks %q:\n%s", want, s)
		}
	}
	keys("q")
}
