package holder

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
)

// serve runs a Server on a fresh socket until t ends.
func serve(t *testing.T, idle time.Duration) (string, <-chan struct{}) {
	t.Helper()
	return serveIn(t, t.TempDir(), idle)
}

// serveIn runs a Server on a fresh socket in runtime (as
// $XDG_RUNTIME_DIR) until t ends.
func serveIn(t *testing.T, runtime string, idle time.Duration) (string, <-chan struct{}) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	sock, err := Socket(filepath.Join(t.TempDir(), "inventory.yaml"), "/nonexistent/butter")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := (&Server{Idle: idle}).Serve(ctx, ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sock, done
}

func TestSocketModes(t *testing.T) {
	sock, _ := serve(t, time.Minute)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: mode %v, want a socket of 0600", sock, fi.Mode())
	}
	if fi, err := os.Stat(filepath.Dir(sock)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("folder: %v, %v; want 0700", fi.Mode(), err)
	}
	if err := (&Dialer{Socket: sock}).Ping(t.Context()); err != nil {
		t.Errorf("ping: %v", err)
	}
	// A second holder on the same socket is refused.
	if _, err := Listen(sock); err == nil || !strings.Contains(err.Error(), "another holder") {
		t.Errorf("second Listen: %v, want another holder", err)
	}
}

func TestSocketFolderRefused(t *testing.T) {
	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	if err := os.Mkdir(filepath.Join(rt, "butter"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(rt, "butter"), 0o755)
	if _, err := Socket("inv.yaml", "butter"); err == nil || !strings.Contains(err.Error(), "0700") {
		t.Errorf("a folder of mode 0755: %v, want refused", err)
	}
	os.Remove(filepath.Join(rt, "butter"))
	if err := os.Symlink(t.TempDir(), filepath.Join(rt, "butter")); err != nil {
		t.Fatal(err)
	}
	if _, err := Socket("inv.yaml", "butter"); err == nil {
		t.Error("a symlinked folder was taken")
	}
}

func TestIdleExit(t *testing.T) {
	sock, done := serve(t, 300*time.Millisecond)
	d := &Dialer{Socket: sock}
	start := time.Now()
	if err := d.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder did not exit 5 s into a 300 ms idle timeout")
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("exited after %s, before its idle timeout", took)
	}
	if err := d.Ping(t.Context()); err == nil {
		t.Error("ping answered after the holder exited")
	}
}

// A connection held open keeps the holder alive past its idle timeout.
func TestIdleWaitsForVerbs(t *testing.T) {
	sock, done := serve(t, 200*time.Millisecond)
	c, err := (&Dialer{Socket: sock}).dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Fatal("the holder exited with a verb connected")
	case <-time.After(time.Second):
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder did not exit after the verb left")
	}
}

// An unreachable machine is answered as such, for the verb to report away.
func TestUnreachable(t *testing.T) {
	sock, _ := serve(t, time.Minute)
	// A closed port on loopback: refused at once.
	_, _, err := (&Dialer{Socket: sock}).Serve(t.Context(), Request{Machine: "m1", Host: "127.0.0.1",
		Dial: Dial{Port: 1, SSHConfig: "none", AgentSocket: "none", UserKnownHosts: []string{}, ConnectTimeout: time.Second}})
	var ae *AnswerError
	if !errors.As(err, &ae) || ae.Answer.Kind != KindUnreachable || ae.Answer.Cause == "" {
		t.Fatalf("serve to a closed port: %v, want unreachable with a cause", err)
	}
}

// TestPeerRefused runs a client as nobody against a holder whose socket
// and folder were opened to everyone: the holder refuses it by its uid
// (SO_PEERCRED), not only by the file's mode.
func TestPeerRefused(t *testing.T) {
	if sock := os.Getenv("BUTTER_HOLDER_PEER_TEST"); sock != "" {
		peerClient(sock)
		return
	}
	testbed.NeedRoot(t)
	// Folders nobody may pass through (not enter): the holder's runtime
	// folder, and one with a copy of this test binary nobody may run.
	dir, err := os.MkdirTemp("", "holder-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o711)
	runtime := filepath.Join(dir, "run")
	if err := os.Mkdir(runtime, 0o711); err != nil {
		t.Fatal(err)
	}
	os.Chmod(runtime, 0o711)
	sock, _ := serveIn(t, runtime, time.Minute)
	bin := filepath.Join(dir, "holder.test")
	if data, err := os.ReadFile(os.Args[0]); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func() (string, error) {
		cmd := exec.CommandContext(t.Context(), bin, "-test.run", "^TestPeerRefused$")
		cmd.Env = append(os.Environ(), "BUTTER_HOLDER_PEER_TEST="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// As made: nobody cannot even connect (the folder is 0700).
	if out, _ := asNobody(); !strings.Contains(out, "peer: connect failed") || !strings.Contains(out, "permission denied") {
		t.Errorf("nobody through a 0700 folder: %s; want permission denied", out)
	}
	// Opened wide: the holder itself refuses.
	os.Chmod(filepath.Dir(sock), 0o755)
	os.Chmod(sock, 0o666)
	if out, _ := asNobody(); !strings.Contains(out, "peer: refused") {
		t.Errorf("nobody on an open socket: %s; want the holder's refusal", out)
	}
	// And root (this test's uid) is still served.
	if err := (&Dialer{Socket: sock}).Ping(t.Context()); err != nil {
		t.Errorf("ping by the holder's own uid: %v", err)
	}
}

// peerClient is TestPeerRefused's client: it pings the holder on sock and
// says what happened (the holder's answer, or why there was none).
func peerClient(sock string) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		println("peer: connect failed:", err.Error())
		return
	}
	defer c.Close()
	// A refusal may come before the request is written (and break its
	// write): the answer is read whatever the write did.
	_ = writeLine(c, Request{Op: OpPing})
	var a Answer
	if err := readLine(bufio.NewReader(c), &a); err != nil {
		println("peer: no answer:", err.Error())
		return
	}
	if a.Error != "" {
		println("peer: refused:", a.Error)
		return
	}
	println("peer: served")
}
