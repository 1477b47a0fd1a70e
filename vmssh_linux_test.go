package main

// The cloud-init tier through the operator's binary: `butter vm ssh`
// logs in to a Debian guest booted from its own disk, through its
// machine, with the host key butter made at `vm create` pinned and no
// prompt anywhere; `ssh -F <(butter vm ssh-config)` does the same; a
// known_hosts entry that does not match is refused.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/inventory"
)

func TestVMSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Debian with cloud-init under TCG through the operator's binary (~3 min warm); not in -short")
	}
	needE2E(t)
	testbed.NeedCloudImageTools(t, false)
	testbed.NeedPrograms(t, "ssh", "setsid")
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	begin := time.Now()
	img, err := testbed.BuildCloudImage(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	e, name, underlay := newE2E(t, ctx, "vs")
	bin := e.butter
	dir := t.TempDir()
	e.must("lab", "up", "--name", name, "--underlay", underlay.String(), "--machines", "1", "--demo=false", "--open=false")
	e.readLab(name)
	inv := []string{"--inventory", e.lab.Inventory}
	e.must(append(inv, "network", "create", "teal", "--subnet", "10.31.0.0/24", "--machines", "m1")...)

	// The operator's own key, which the seed authorizes.
	key := testbed.NewUserKey(t)
	idFile := filepath.Join(dir, "id_ed25519")
	key.WriteIdentity(t, idFile)
	if err := os.WriteFile(idFile+".pub", key.Authorized(), 0o644); err != nil {
		t.Fatal(err)
	}

	const vm = "deb1"
	start := time.Now()
	e.must(append(inv, "vm", "create", vm, "--machine", "m1", "--network", "teal", "--image", img.Disk,
		"--memory", "512M", "--cpus", "2", "--disk", "3G", "--ssh-key", idFile+".pub")...)
	t.Logf("vm create (the image's upload included) returned after %s", time.Since(start).Round(100*time.Millisecond))

	// The public half is known before the guest has even booted, and
	// only the public half is beside the inventory.
	known := inventory.KnownHostsPath(e.lab.Inventory)
	hostKey, err := inventory.VMHostKey(e.lab.Inventory, vm)
	if err != nil || hostKey == nil {
		t.Fatalf("no host key for %s in %s: %v", vm, known, err)
	}
	files, _ := filepath.Glob(e.lab.Inventory + "*")
	for _, f := range files {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a private key", f)
		}
	}

	boot, err := testbed.WaitCloudInit(ctx, e.runner("m1"), "/var/log/libvirt/butter/"+vm+".console.log", 6*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cloud-init finished %s after vm create started", time.Since(start).Round(100*time.Millisecond))
	for _, c := range boot.Complaints {
		t.Errorf("cloud-init complained on the console: %s", c)
	}
	printed, err := testbed.GuestHostKey(boot.Log)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(printed.Marshal(), hostKey.Marshal()) {
		t.Fatalf("the guest printed host key %s, butter knows %s", ssh.FingerprintSHA256(printed), ssh.FingerprintSHA256(hostKey))
	}

	// No terminal (setsid, stdin /dev/null) and BatchMode: a prompt of
	// any kind would fail the command instead of waiting.
	batch := []string{"-o", "BatchMode=yes", "-o", "IdentityFile=" + idFile, "-o", "IdentitiesOnly=yes"}
	vmSSH := func(command ...string) (string, string, error) {
		// The image is a file of the operator's, no catalog image: its
		// login user is given.
		args := append(append(append([]string{bin}, inv...), "vm", "ssh", "--user", "debian"), batch...)
		args = append(append(args, vm, "--"), command...)
		return runNoTTY(ctx, e.env, args...)
	}
	out, errOut, err := vmSSH("hostname")
	if err != nil || out != vm+"\n" {
		t.Fatalf("butter vm ssh %s -- hostname: %q, %v\n%s", vm, out, err, errOut)
	}
	t.Logf("butter vm ssh %s -- hostname: %q", vm, out)

	cfg := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(cfg, []byte(e.must(append(inv, "vm", "ssh-config", "--user", "debian")...)), 0o600); err != nil {
		t.Fatal(err)
	}
	sshF := func() (string, string, error) {
		return runNoTTY(ctx, e.env, append(append([]string{"ssh", "-F", cfg}, batch...), vm, "id", "-un")...)
	}
	if out, errOut, err := sshF(); err != nil || out != "debian\n" {
		t.Fatalf("ssh -F <(butter vm ssh-config) %s id -un: %q, %v\n%s", vm, out, err, errOut)
	}

	// The negative control: another key under the VM's name is refused,
	// by both, before anything is sent.
	good, err := os.ReadFile(known)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewPublicKey(other)
	bad := strings.Replace(string(good), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey))),
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey))), 1)
	if bad == string(good) {
		t.Fatalf("cannot find %s's key in %s:\n%s", vm, known, good)
	}
	if err := os.WriteFile(known, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, run := range map[string]func() (string, string, error){
		"vm ssh": func() (string, string, error) { return vmSSH("hostname") },
		"ssh -F": sshF,
	} {
		out, errOut, err := run()
		if err == nil || out != "" || !strings.Contains(errOut, "Host key verification failed") {
			t.Errorf("%s with a host key that does not match: %q, %v\n%s\nwant a refusal", what, out, err, errOut)
		}
	}
	if err := os.WriteFile(known, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, err := vmSSH("true"); err != nil {
		t.Fatalf("vm ssh with the key put back: %q, %v\n%s", out, err, errOut)
	}

	e.must(append(inv, "vm", "remove", vm)...)
	if k, err := inventory.VMHostKey(e.lab.Inventory, vm); k != nil || err != nil {
		t.Errorf("vm remove left %s's host key in %s: %v", vm, known, err)
	}
	t.Logf("whole test: %s", time.Since(begin).Round(100*time.Millisecond))
}

// runNoTTY runs args with no controlling terminal and nothing on stdin,
// and returns stdout and stderr.
func runNoTTY(ctx context.Context, env []string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, "setsid", append([]string{"-w"}, args...)...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}
