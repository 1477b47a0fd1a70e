package plumbing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// recorder is a machine side that remembers what it was asked.
type recorder struct {
	applied  []helperapi.Spec
	prepared []helperapi.Spec
	dryRuns  []helperapi.Spec
	desired  helperapi.Desired
	err      error
	// events, if set, is what WatchVMs streams; watchEnded hears when a
	// watch's ctx ends.
	events     chan helperapi.VMEvent
	watchEnded chan struct{}
}

func (r *recorder) PublicKey() (string, error) { return testbed.Key('a'), nil }
func (r *recorder) Apply(ctx context.Context, s helperapi.Spec) (helperapi.Report, error) {
	r.applied = append(r.applied, s)
	return helperapi.Report{Networks: []helperapi.NetworkReport{{Name: "blue", MTU: 1370}}, Changes: []string{"add bridge btbr1"}}, r.err
}
func (r *recorder) Prepare(ctx context.Context, s helperapi.Spec) error {
	r.prepared = append(r.prepared, s)
	return r.err
}
func (r *recorder) RotateKey(ctx context.Context) (string, error) { return testbed.Key('n'), r.err }
func (r *recorder) Desired(ctx context.Context) (helperapi.Desired, error) {
	return r.desired, r.err
}
func (r *recorder) Check(ctx context.Context, s helperapi.Spec) ([]helperapi.Drift, error) {
	return []helperapi.Drift{{Link: "btbr1", Problem: "missing"}}, nil
}
func (r *recorder) DryRun(ctx context.Context, req helperapi.DryRunRequest) (helperapi.DryRun, error) {
	if req.Spec != nil {
		r.dryRuns = append(r.dryRuns, *req.Spec)
	}
	return helperapi.DryRun{Steps: []helperapi.DryRunStep{{Change: "add bridge btbr1", Commands: []string{"ip link add name btbr1 mtu 1370 type bridge"}}}}, r.err
}
func (r *recorder) Remove(ctx context.Context) error { return r.err }
func (r *recorder) Facts(ctx context.Context) (helperapi.Facts, error) {
	return helperapi.Facts{UplinkMTU: 1500, Peers: []helperapi.PeerFacts{{Name: "m2", HandshakeAge: -1}}}, nil
}
func (r *recorder) CreateVM(ctx context.Context, req helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	for done := int64(0); done <= 100; done += 50 {
		progress(helperapi.Progress{Name: req.Image, Phase: helperapi.PhaseDownload, Done: done, Total: 100})
	}
	return helperapi.VMInfo{Name: req.Name, State: "running", Network: req.Network, Address: req.Address}, r.err
}
func (r *recorder) ListVMs(ctx context.Context) ([]helperapi.VMInfo, error) {
	return []helperapi.VMInfo{{Name: "web", MemoryMiB: 512}}, nil
}
func (r *recorder) VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error) {
	return helperapi.VMActionResult{Forced: a.Action == "stop"}, r.err
}
func (r *recorder) Images(ctx context.Context) ([]helperapi.Image, error) { return nil, nil }
func (r *recorder) WatchVMs(ctx context.Context) (<-chan helperapi.VMEvent, error) {
	if r.events == nil {
		return nil, errors.New("no libvirtd here")
	}
	context.AfterFunc(ctx, func() { r.watchEnded <- struct{}{} })
	return r.events, nil
}

func TestRPCRoundTrip(t *testing.T) {
	ctx := context.Background()
	sock, l := listenTemp(t)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	r := &recorder{}
	c := serveAndDial(t, ctx, l, sock, r)
	spec := testSpec(helperapi.Network{Name: "blue", ID: 1, Peers: []string{"m2"}})
	rep, err := c.Apply(ctx, spec)
	if err != nil || rep.Networks[0].MTU != 1370 || rep.Changes[0] != "add bridge btbr1" {
		t.Fatalf("apply: %+v, %v", rep, err)
	}
	if len(r.applied) != 1 || r.applied[0].Peers[1].AllowedIPs[0] != spec.Peers[1].AllowedIPs[0] {
		t.Fatalf("the spec did not arrive whole: %+v", r.applied)
	}
	if d, err := c.Check(ctx, spec); err != nil || len(d) != 1 || d[0].Problem != "missing" {
		t.Fatalf("check: %+v, %v", d, err)
	}
	if d, err := c.DryRun(ctx, helperapi.DryRunRequest{Spec: &spec}); err != nil || len(d.Steps) != 1 ||
		d.Steps[0].Commands[0] != "ip link add name btbr1 mtu 1370 type bridge" || len(r.dryRuns) != 1 || len(r.applied) != 1 {
		t.Fatalf("dry run: %+v, %v (dry runs %d, applied %d)", d, err, len(r.dryRuns), len(r.applied))
	}
	if f, err := c.Facts(ctx); err != nil || f.UplinkMTU != 1500 || f.Peers[0].HandshakeAge != -1 {
		t.Fatalf("facts: %+v, %v", f, err)
	}
	if k, err := c.PublicKey(ctx); err != nil || k != testbed.Key('a') {
		t.Fatalf("public key: %q, %v", k, err)
	}
	var got []int64
	info, err := c.CreateVM(ctx, helperapi.VMRequest{Name: "web", Image: "debian-12", Network: "blue", Address: "10.10.1.5"},
		func(p helperapi.Progress) { got = append(got, p.Done) })
	if err != nil || info.State != "running" || info.Address != "10.10.1.5" {
		t.Fatalf("create vm: %+v, %v", info, err)
	}
	if fmt.Sprint(got) != "[0 50 100]" {
		t.Errorf("progress heard %v, want [0 50 100] before the reply", got)
	}
	if vms, err := c.ListVMs(ctx); err != nil || len(vms) != 1 || vms[0].MemoryMiB != 512 {
		t.Fatalf("list vms: %+v, %v", vms, err)
	}
	if res, err := c.VMAction(ctx, helperapi.VMActionRequest{Name: "web", Action: "stop"}); err != nil || !res.Forced {
		t.Fatalf("stop: %+v, %v", res, err)
	}

	r.err = errors.New(`add bridge "btbr1": operation not permitted`)
	if err := c.Remove(ctx); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("remove error: %v, want the helper's own message", err)
	}

	// A second daemon on the same socket is refused; a stale socket file
	// is replaced.
	if _, err := ListenSocket(sock); err == nil || !strings.Contains(err.Error(), "another helper daemon") {
		t.Fatalf("second listener: %v", err)
	}
	stale := filepath.Join(t.TempDir(), "stale.sock")
	sl, _ := net.Listen("unix", stale)
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	l2, err := ListenSocket(stale)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l2.Close()
}

func TestRPCWatch(t *testing.T) {
	ctx := context.Background()
	sock, l := listenTemp(t)
	r := &recorder{events: make(chan helperapi.VMEvent), watchEnded: make(chan struct{}, 10)}
	c := serveAndDial(t, ctx, l, sock, r)

	watch := func(ctx context.Context) (chan helperapi.VMEvent, chan error) {
		evs, end := make(chan helperapi.VMEvent, 10), make(chan error, 1)
		go func() { end <- c.Watch(ctx, func(e helperapi.VMEvent) { evs <- e }) }()
		return evs, end
	}
	next := func(evs chan helperapi.VMEvent) helperapi.VMEvent {
		t.Helper()
		select {
		case e := <-evs:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event within 5 s")
		}
		return helperapi.VMEvent{}
	}

	// The VMs there are come first, then the changes, in order.
	wctx, cancel := context.WithCancel(ctx)
	evs, end := watch(wctx)
	if e := next(evs); e != (helperapi.VMEvent{VM: "web", Event: helperapi.EventPresent}) {
		t.Fatalf("first event %+v, want web present", e)
	}
	r.events <- helperapi.VMEvent{VM: "web", Event: "stopped", State: "shut off"}
	r.events <- helperapi.VMEvent{VM: "web", Event: "started", State: "running"}
	if e := next(evs); e.Event != "stopped" || e.State != "shut off" {
		t.Errorf("second event %+v, want stopped", e)
	}
	if e := next(evs); e.Event != "started" || e.State != "running" {
		t.Errorf("third event %+v, want started", e)
	}
	// Ending the watch ends the daemon's subscription too.
	cancel()
	if err := <-end; err != nil {
		t.Errorf("watch ended by its ctx: %v, want nil", err)
	}
	select {
	case <-r.watchEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("the daemon kept watching after the client stopped")
	}

	// The same connection watches again; libvirtd going away ends it with
	// the reason.
	evs, end = watch(ctx)
	next(evs)
	close(r.events)
	select {
	case err := <-end:
		if err == nil || !strings.Contains(err.Error(), "libvirtd hung up") {
			t.Errorf("watch ended by the daemon: %v, want why", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end when the daemon's event stream did")
	}
	// Other calls work on the connection meanwhile and after.
	if _, err := c.ListVMs(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPrivateKeyStaysPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := state{dir}
	k1, err := s.privateKey()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("state folder mode %v, want 0700", di.Mode().Perm())
	}
	k2, err := s.privateKey()
	if err != nil || k1 != k2 {
		t.Fatalf("the key changed between calls (err %v)", err)
	}
	if err := notSelf(testSpec(), k1.PublicKey().String()); err != nil {
		t.Fatalf("a spec without this machine was refused: %v", err)
	}
	spec := testSpec()
	spec.Peers[0].PublicKey = k1.PublicKey().String()
	if err := notSelf(spec, k1.PublicKey().String()); err == nil {
		t.Fatal("a spec listing this machine as its own peer was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, keyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.privateKey(); err == nil || !strings.Contains(err.Error(), "move it away") {
		t.Fatalf("a corrupt key: %v, want an error that says what to do", err)
	}
}

func TestSpecPersistence(t *testing.T) {
	s := state{t.TempDir()}
	if _, ok, err := s.spec(); ok || err != nil {
		t.Fatalf("empty state: ok=%v err=%v", ok, err)
	}
	want := testSpec(helperapi.Network{Name: "blue", ID: 1, Peers: []string{"m2"}})
	if err := s.saveSpec(want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.spec()
	if err != nil || !ok || got.Networks[0].Name != "blue" || got.Peers[1].Keepalive != 25 {
		t.Fatalf("round trip: %+v ok=%v err=%v", got, ok, err)
	}
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if err := s.forgetSpec(); err != nil {
		t.Fatal(err)
	}
	if err := s.forgetSpec(); err != nil {
		t.Fatalf("forgetting twice: %v", err)
	}
}

// serveAndDial serves m on l until the test ends, and returns a client
// connected to it through sock, closed when the test ends.
// listenTemp listens on a helper socket in a fresh temporary directory.
func listenTemp(t *testing.T) (string, net.Listener) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "h.sock")
	l, err := ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	return sock, l
}

func serveAndDial(t *testing.T, ctx context.Context, l net.Listener, sock string, m machineSide) *helperapi.Client {
	t.Helper()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- Serve(sctx, l, m, slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() { stop(); <-done })
	c, err := helperapi.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The new methods cross the wire, and so does an error's code, wrapped or
// not; an error without one arrives as a plain failure.
func TestRPCCodes(t *testing.T) {
	ctx := context.Background()
	sock, l := listenTemp(t)
	want := helperapi.Desired{Generation: 4, Mesh: helperapi.DesiredMesh{Prefix: netip.MustParsePrefix("10.99.0.0/16"), Port: 51820},
		Machines: []helperapi.DesiredMachine{{Name: "m1", Address: "192.0.2.1", PublicKey: testbed.Key('a')}}}
	r := &recorder{desired: want}
	c := serveAndDial(t, ctx, l, sock, r)

	spec := testSpec()
	spec.Generation, spec.Desired = 4, &want
	if err := c.Prepare(ctx, spec); err != nil || len(r.prepared) != 1 || r.prepared[0].Desired.Digest() != want.Digest() {
		t.Fatalf("prepare: %v; the daemon heard %+v", err, r.prepared)
	}
	if k, err := c.RotateKey(ctx); err != nil || k != testbed.Key('n') {
		t.Fatalf("rotate key: %q, %v", k, err)
	}
	if d, err := c.Desired(ctx); err != nil || d.Digest() != want.Digest() {
		t.Fatalf("desired: %+v, %v; want %+v", d, err, want)
	}

	for _, tc := range []struct {
		name    string
		err     error
		code    int64
		message string
		invalid bool
		stale   bool
	}{
		{"invalid", &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: "mesh address: bad"},
			helperapi.CodeInvalid, "mesh address: bad", true, false},
		{"stale, wrapped", fmt.Errorf("apply: %w", &helperapi.RemoteError{Code: helperapi.CodeStale, Message: "generation 3 is behind 5"}),
			helperapi.CodeStale, "apply: generation 3 is behind 5", false, true},
		{"apply failed", &helperapi.RemoteError{Code: helperapi.CodeApplyFailed, Message: "apply failed: x; the machine is back"},
			helperapi.CodeApplyFailed, "apply failed: x; the machine is back", false, false},
		{"plain", errors.New("disk full"), 0, "disk full", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.err = tc.err
			for name, call := range map[string]func() error{
				"apply":   func() error { _, err := c.Apply(ctx, spec); return err },
				"prepare": func() error { return c.Prepare(ctx, spec) },
				"rotate":  func() error { _, err := c.RotateKey(ctx); return err },
				"desired": func() error { _, err := c.Desired(ctx); return err },
			} {
				err := call()
				var re *helperapi.RemoteError
				if !errors.As(err, &re) {
					t.Fatalf("%s: %v (%T), want a *helperapi.RemoteError", name, err, err)
				}
				if re.Code != tc.code || re.Message != tc.message {
					t.Errorf("%s: code %d message %q, want %d %q", name, re.Code, re.Message, tc.code, tc.message)
				}
				if helperapi.IsInvalid(err) != tc.invalid || helperapi.IsStale(err) != tc.stale {
					t.Errorf("%s: IsInvalid %v IsStale %v, want %v %v", name, helperapi.IsInvalid(err), helperapi.IsStale(err), tc.invalid, tc.stale)
				}
			}
		})
	}

	// A bad request keeps JSON-RPC's own code.
	r.err = nil
	var raw json.RawMessage
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(`{"jsonrpc":"2.0","id":1,"method":"helper.prepare","params":{"mesh":{},"bogus":1}}`)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewDecoder(conn).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"code":-32602`) {
		t.Errorf("unknown field in prepare's params: %s, want code -32602 (invalid params)", raw)
	}
}
