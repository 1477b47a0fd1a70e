package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/sourcegraph/jsonrpc2"
	"golang.org/x/crypto/ssh"
)

// channelRWC is an SSH channel as the io.ReadWriteCloser jsonrpc2 wants.
type channelRWC struct{ ssh.Channel }

// fakeServe answers `helper serve` like the real one: stray output, the
// hello line, then JSON-RPC, with helper.facts answered.
func fakeServe(proto int, version string, sessions *atomic.Int32) func(string, ssh.Channel, <-chan struct{}) int {
	return func(cmd string, ch ssh.Channel, gone <-chan struct{}) int {
		if !strings.HasSuffix(unwire(cmd), " helper serve") {
			return shellHandler(cmd, ch, gone)
		}
		n := sessions.Add(1)
		fmt.Fprintf(ch, "Welcome to the machine!\nLast login: never\n")
		fmt.Fprintf(ch, "%s %d %s\n", helperapi.ServeMagic, proto, version)
		h := jsonrpc2.HandlerWithError(func(ctx context.Context, c *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
			if req.Method == helperapi.MethodImages {
				<-gone // never answers
			}
			if req.Method == helperapi.MethodFacts {
				return helperapi.Facts{Uplink: fmt.Sprintf("session%d", n)}, nil
			}
			return nil, &jsonrpc2.Error{Code: jsonrpc2.CodeMethodNotFound, Message: "no"}
		})
		conn := jsonrpc2.NewConn(context.Background(), jsonrpc2.NewPlainObjectStream(channelRWC{ch}), jsonrpc2.AsyncHandler(h))
		select {
		case <-conn.DisconnectNotify():
		case <-gone:
			conn.Close()
		}
		return 0
	}
}

func TestMachineProtocol(t *testing.T) {
	f := newFixture(t)
	var sessions atomic.Int32
	f.srv.handler = fakeServe(helperapi.ServeProtocol, "0123456789abcdef", &sessions)
	c := f.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := Connect(ctx, c, Helper{Path: "/var/lib/butter/bin/butter-0123456789abcdef", Version: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !f.srv.sawExec("/var/lib/butter/bin/butter-0123456789abcdef helper serve") {
		t.Fatalf("ran %q", f.srv.execs)
	}
	cl, err := m.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	facts, err := cl.Facts(ctx)
	if err != nil || facts.Uplink != "session1" {
		t.Fatalf("facts over the first session: %+v, %v", facts, err)
	}

	// The connection drops: the next call dials again.
	f.srv.dropAll()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, err := m.Client(ctx)
		if err != nil {
			t.Fatal(err)
		}
		facts, err := cl.Facts(ctx)
		if err == nil {
			if facts.Uplink != "session2" {
				t.Fatalf("after reconnect: %+v", facts)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A per-call deadline ends a call that gets no answer.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	cl, err = m.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Images(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its deadline: %v", err)
	}

	m.Close()
	if _, err := m.Client(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestMachineProtocolMismatch(t *testing.T) {
	f := newFixture(t)
	var sessions atomic.Int32
	f.srv.handler = fakeServe(helperapi.ServeProtocol+1, "0123456789abcdef", &sessions)
	c := f.client(t)
	_, err := Connect(context.Background(), c, Helper{Path: "/x/butter-0123456789abcdef", Version: "0123456789abcdef"})
	if !errors.Is(err, ErrHelperMismatch) || !strings.Contains(err.Error(), "reinstall") {
		t.Fatalf("got %v, want a helper mismatch", err)
	}

	f = newFixture(t)
	f.srv.handler = fakeServe(helperapi.ServeProtocol, "ffffffffffffffff", &sessions)
	c = f.client(t)
	_, err = Connect(context.Background(), c, Helper{Path: "/x/butter-0123456789abcdef", Version: "0123456789abcdef"})
	if !errors.Is(err, ErrHelperMismatch) {
		t.Fatalf("other version: got %v", err)
	}
}

// A helper that is not installed is a mismatch too (install it again).
func TestMachineHelperMissing(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	_, err := Connect(context.Background(), c, Helper{Path: "/nonexistent/butter-0123456789abcdef", Version: "0123456789abcdef"})
	if !errors.Is(err, ErrHelperMismatch) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("got %v", err)
	}
}

func TestImportImageProgress(t *testing.T) {
	f := newFixture(t)
	var got atomic.Int64
	f.srv.handler = func(cmd string, ch ssh.Channel, gone <-chan struct{}) int {
		if !strings.Contains(unwire(cmd), " helper image import ") {
			return shellHandler(cmd, ch, gone)
		}
		buf := make([]byte, 64<<10)
		for {
			n, err := ch.Read(buf)
			got.Add(int64(n))
			if err != nil {
				break
			}
		}
		fmt.Fprintf(ch, `{"id":"abc","name":"disk.img","sources":["sha256:abc"],"fetched":"2024-01-01T00:00:00Z"}`+"\n")
		return 0
	}
	c := f.client(t)
	m := &Machine{helper: Helper{Path: "/x/butter-1", Version: "1"}, dial: make(chan struct{}, 1), ssh: c}
	body := strings.Repeat("x", 1<<20)
	var last int64
	img, err := m.ImportImage(context.Background(), ImageUpload{Name: "disk.img", Size: int64(len(body)), SHA256: strings.Repeat("a", 64),
		Body: strings.NewReader(body), Progress: func(n int64) { last = n }})
	if err != nil || img.ID != "abc" {
		t.Fatalf("import: %+v, %v", img, err)
	}
	if last != int64(len(body)) || got.Load() != int64(len(body)) {
		t.Fatalf("progress said %d, the machine got %d, of %d", last, got.Load(), len(body))
	}
	want := "/x/butter-1 helper image import --name disk.img --size 1048576 --sha256 " + strings.Repeat("a", 64)
	f.srv.mu.Lock()
	defer f.srv.mu.Unlock()
	if !slices.ContainsFunc(f.srv.execs, func(c string) bool { return strings.HasPrefix(c, want) }) {
		t.Fatalf("ran %q", f.srv.execs)
	}
}

// lockedBuffer is a bytes.Buffer several goroutines may write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTranscript: with DialOptions.Transcript set, every protocol message
// is one line naming the host and the direction.
func TestTranscript(t *testing.T) {
	f := newFixture(t)
	var sessions atomic.Int32
	f.srv.handler = fakeServe(helperapi.ServeProtocol, "0123456789abcdef", &sessions)
	var tr lockedBuffer
	f.opts.Transcript = &tr
	c := f.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := Connect(ctx, c, Helper{Path: "/x/butter-0123456789abcdef", Version: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cl, err := m.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Facts(ctx); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(tr.String()), "\n")
	var sent, got bool
	for _, l := range lines {
		sent = sent || strings.HasPrefix(l, c.Host+` > {`) && strings.Contains(l, `"method":"`+helperapi.MethodFacts+`"`)
		got = got || strings.HasPrefix(l, c.Host+` < {`) && strings.Contains(l, `"session1"`)
	}
	if !sent || !got {
		t.Fatalf("transcript lacks the facts call or its answer:\n%s", tr.String())
	}
}
