package plumbing_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing/vm"
	"golang.org/x/sys/unix"
)

// TestVMEdges drives one machine's helper through what must fail cleanly,
// two VMs over one cached base, a stop that has to pull the plug, and the
// lifecycle event stream.
func TestVMEdges(t *testing.T) {
	needVMLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	// The helper daemon inherits the test's environment: it trusts the
	// certificate of the https server below and nothing else.
	cert, certFile := testCert(t)
	t.Setenv("SSL_CERT_FILE", certFile)
	v := newVMLab(t, ctx, "vme", 1)
	m := v.Machines[0]

	// An https server inside the machine (the daemon cannot reach the
	// test's own loopback) that serves 1 MiB of something.
	var hits atomic.Int32
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write(blob)
	}))
	srv.Listener.Close()
	srv.Listener = listenIn(t, m)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()

	if _, err := v.createTiny(ctx, m, "keep", "10.20.0.31"); err != nil {
		t.Fatalf("create keep: %v", err)
	}

	t.Run("bad input leaves nothing", func(t *testing.T) {
		wrong := strings.Repeat("0", 64)
		tiny := "kernel=" + v.kernel + ",initrd=" + v.initrd
		for _, c := range []struct {
			what, name, addr, image, memory string
			want                            []string
		}{
			{"unknown image", "a1", "10.20.0.40", "nosuch-9", "128",
				[]string{`unknown catalog image "nosuch-9"`, "known are debian-12", "./nosuch-9"}},
			{"checksum mismatch", "a2", "10.20.0.40", srv.URL + "/disk.qcow2,checksum=sha256:" + wrong, "128",
				[]string{"sha256 mismatch for disk.qcow2", "expected " + wrong + " (given with the URL)", "nothing was cached"}},
			{"memory beyond what is free", "a3", "10.20.0.40", tiny, "4194304",
				[]string{`vm "a3": 4194304 MiB of memory asked`, "MiB available; ask for less"}},
			{"duplicate name", "keep", "10.20.0.40", tiny, "128",
				[]string{`vm "keep" already exists on this machine`, "choose another name or remove it first"}},
			{"invalid name", "Web_1", "10.20.0.40", tiny, "128",
				[]string{`vm name "Web_1"`, "lower-case letters, digits and dashes"}},
			{"address outside the subnet", "a4", "10.30.0.5", tiny, "128",
				[]string{`address 10.30.0.5: outside network "blue"'s subnet 10.20.0.0/24`, "pick one inside it"}},
			{"address taken", "a5", "10.20.0.31", tiny, "128",
				[]string{`address 10.20.0.31 on network "blue" is taken by vm "keep"`, "choose another"}},
		} {
			t.Run(c.what, func(t *testing.T) {
				before := v.leftovers(t, ctx, m)
				hitsBefore := hits.Load()
				out, err := v.helper(ctx, m, "vm", "create", c.name, "--network", vmNetwork.Name,
					"--address", c.addr, "--image", c.image, "--memory-mib", c.memory)
				if err == nil {
					t.Fatalf("created %s: %s", c.name, out)
				}
				for _, w := range c.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\nlacks %q", err, w)
					}
				}
				if after := v.leftovers(t, ctx, m); after != before {
					t.Errorf("left behind:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				if got := hits.Load() - hitsBefore; (c.what == "checksum mismatch") != (got > 0) {
					t.Errorf("%d downloads; only the checksum case should download (bad input is refused first)", got)
				}
			})
		}
		if got := v.list(t, ctx, m)["keep"].State; got != "running" {
			t.Errorf("keep after the refusals: %q, want running", got)
		}
	})

	t.Run("events", func(t *testing.T) {
		// Once its init runs, the tiny guest powers off on the ACPI button.
		if _, err := v.waitConsoleLog(ctx, m, "keep", sim.TinyGuestReady, 90*time.Second); err != nil {
			t.Fatal(err)
		}
		ev := v.events(t, ctx, m)
		ev.expect(t, helperapi.VMEvent{VM: "keep", Event: helperapi.EventPresent, State: "running"})
		out, err := v.helper(ctx, m, "vm", "stop", "keep", "--timeout", "60s")
		if err != nil {
			t.Fatalf("stop keep: %v: %s", err, out)
		}
		ev.expect(t, helperapi.VMEvent{VM: "keep", Event: "stopped", State: "shut off"})
		if out, err := v.helper(ctx, m, "vm", "start", "keep"); err != nil {
			t.Fatalf("start keep: %v: %s", err, out)
		}
		ev.expect(t, helperapi.VMEvent{VM: "keep", Event: "started", State: "running"})
		if out, err := v.helper(ctx, m, "vm", "remove", "keep"); err != nil {
			t.Fatalf("remove keep: %v: %s", err, out)
		}
		ev.expect(t, helperapi.VMEvent{VM: "keep", Event: "undefined"})
	})

	t.Run("two VMs share one base", func(t *testing.T) {
		base, sum := makeBase(t, ctx)
		for _, c := range []struct{ name, addr string }{{"disk1", "10.20.0.41"}, {"disk2", "10.20.0.42"}} {
			out, err := v.helper(ctx, m, "vm", "create", c.name, "--network", vmNetwork.Name,
				"--address", c.addr, "--image", base, "--memory-mib", "64")
			if err != nil {
				t.Fatalf("create %s: %v: %s", c.name, err, out)
			}
		}
		cached := filepath.Join(vm.DefaultImagesDir, "base-"+sum+".qcow2")
		var overlays []int64
		for _, name := range []string{"disk1", "disk2"} {
			chain := backingChain(t, ctx, m, filepath.Join(vm.DefaultVMsDir, name+".qcow2"))
			if len(chain) != 2 {
				t.Fatalf("%s: backing chain of %d images, want overlay and base: %+v", name, len(chain), chain)
			}
			if chain[0].Format != "qcow2" || chain[0].FullBackingFilename != cached {
				t.Errorf("%s's disk backs onto %q (%s), want the cached base %s", name,
					chain[0].FullBackingFilename, chain[0].Format, cached)
			}
			if chain[1].ActualSize < 8<<20 || chain[0].ActualSize > 1<<20 {
				t.Errorf("%s: overlay %d bytes, base %d bytes: want a small overlay over a base of 8 MiB or more",
					name, chain[0].ActualSize, chain[1].ActualSize)
			}
			overlays = append(overlays, chain[0].ActualSize)
		}
		t.Logf("overlays %d and %d bytes over one base %s", overlays[0], overlays[1], cached)
		out, err := v.helper(ctx, m, "images")
		if err != nil || strings.Count(string(out), "base-"+sum) != 1 {
			t.Errorf("the base should be cached once: %v: %s", err, out)
		}
		// The helper let go of the files it read the images from.
		if open := openFiles(t, v.helpers.Daemons[m.Name].PID(), base, v.kernel, v.initrd); len(open) > 0 {
			t.Errorf("the helper daemon still holds %v open", open)
		}

		// No OS listens to the ACPI button: the stop pulls the plug.
		begin := time.Now()
		out, err = v.helper(ctx, m, "vm", "stop", "disk1", "--timeout", "3s")
		took := time.Since(begin)
		if err != nil {
			t.Fatalf("stop disk1: %v: %s", err, out)
		}
		var res helperapi.VMActionResult
		if err := json.Unmarshal(out, &res); err != nil || !res.Forced {
			t.Errorf("stop of a guest that ignores ACPI: %s (%v), want forced", out, err)
		}
		if took < 3*time.Second || took > 10*time.Second {
			t.Errorf("forced stop took %s, want about the 3 s timeout", took)
		}
		t.Logf("forced stop took %s", took)
		if got := v.list(t, ctx, m)["disk1"].State; got != "shut off" {
			t.Errorf("disk1 after stop: %q", got)
		}
		for _, name := range []string{"disk1", "disk2"} {
			if out, err := v.helper(ctx, m, "vm", "remove", name); err != nil {
				t.Fatalf("remove %s: %v: %s", name, err, out)
			}
		}
		if files, err := vmFiles(ctx, m); err != nil || len(files) != 0 {
			t.Errorf("after removing both: %v (%v)", files, err)
		}
		if _, err := m.Run(ctx, "/usr/bin/test", "-f", cached); err != nil {
			t.Errorf("the base should stay cached: %v", err)
		}
	})
}

// testCert makes a throwaway certificate for 127.0.0.1 and writes it
// where SSL_CERT_FILE can name it.
func testCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "butter test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, file
}

// listenIn listens on 127.0.0.1 inside m's network namespace: a socket
// stays in the namespace it was made in.
func listenIn(t *testing.T, m *sim.Machine) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	ns, err := os.Open(filepath.Join(sim.NetnsDir, m.Netns()))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	l, lerr := net.Listen("tcp", "127.0.0.1:0")
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with the goroutine.
		t.Fatalf("back to the test's namespace: %v", err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		t.Fatal(lerr)
	}
	return l
}

// leftovers describes what the machine has of VMs: domains, their files,
// console logs and cached images (with sizes), so that two calls compare.
func (v *vmLab) leftovers(t *testing.T, ctx context.Context, m *sim.Machine) string {
	t.Helper()
	var b strings.Builder
	for name, i := range v.list(t, ctx, m) {
		fmt.Fprintf(&b, "vm %s %s\n", name, i.State)
	}
	// Console logs grow while guests print: their names only.
	vms, err := m.Run(ctx, "/usr/bin/find", vm.DefaultVMsDir, vm.DefaultLogDir, "-type", "f")
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := m.Run(ctx, "/usr/bin/find", vm.DefaultImagesDir,
		"-path", "*/.locks", "-prune", "-o", "-type", "f", "-printf", "%p %s\n")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(vms)) // no spaces in these paths
	lines = append(lines, strings.Split(strings.TrimSpace(string(imgs)), "\n")...)
	slices.Sort(lines)
	b.WriteString(strings.Join(lines, "\n"))
	return b.String()
}

// eventStream is `butter helper vm events` running on a machine.
type eventStream struct {
	events chan helperapi.VMEvent
	seen   []helperapi.VMEvent
}

func (v *vmLab) events(t *testing.T, ctx context.Context, m *sim.Machine) *eventStream {
	t.Helper()
	cmd := m.Command(ctx, v.butter, "helper", "vm", "events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &eventStream{events: make(chan helperapi.VMEvent, 100)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev helperapi.VMEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("vm events printed %q: %v", sc.Text(), err)
				return
			}
			s.events <- ev
		}
	}()
	return s
}

// expect reads events until want arrives.
func (s *eventStream) expect(t *testing.T, want helperapi.VMEvent) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("the event stream ended before %+v; saw %+v", want, s.seen)
			}
			s.seen = append(s.seen, ev)
			if ev == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %+v within 30 s; saw %+v", want, s.seen)
		}
	}
}

// makeBase makes a qcow2 disk image with a boot sector that halts the CPU
// (no OS: the guest idles and ignores the ACPI button) and 8 MiB of random
// data, and returns its path and sha256.
func makeBase(t *testing.T, ctx context.Context) (string, string) {
	t.Helper()
	dir := t.TempDir()
	raw := make([]byte, 9<<20)
	rand.Read(raw[512 : 512+8<<20])
	copy(raw, []byte{0xfa, 0xf4, 0xeb, 0xfd}) // cli; hlt; jmp back to hlt
	raw[510], raw[511] = 0x55, 0xaa
	if err := os.WriteFile(filepath.Join(dir, "base.raw"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.qcow2")
	cmd := exec.CommandContext(ctx, "/usr/bin/qemu-img", "convert", "-f", "raw", "-O", "qcow2",
		filepath.Join(dir, "base.raw"), base)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	data, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return base, hex.EncodeToString(sum[:])
}

// chainImage is one image of `qemu-img info --backing-chain`.
type chainImage struct {
	Filename            string `json:"filename"`
	Format              string `json:"format"`
	ActualSize          int64  `json:"actual-size"`
	VirtualSize         int64  `json:"virtual-size"`
	FullBackingFilename string `json:"full-backing-filename"`
}

func backingChain(t *testing.T, ctx context.Context, m *sim.Machine, disk string) []chainImage {
	t.Helper()
	// -U: qemu holds the running VM's disk locked.
	out, err := m.Run(ctx, "/usr/bin/qemu-img", "info", "-U", "--backing-chain", "--output=json", disk)
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", disk, err)
	}
	var chain []chainImage
	if err := json.Unmarshal(out, &chain); err != nil {
		t.Fatalf("qemu-img info %s: %v: %s", disk, err, out)
	}
	return chain
}

// openFiles lists which of paths process pid holds open.
func openFiles(t *testing.T, pid int, paths ...string) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && slices.Contains(paths, target) {
			open = append(open, target)
		}
	}
	return open
}
