package plumbing

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

func TestServeHello(t *testing.T) {
	line := helperapi.ServeHello("0123456789abcdef")
	if line != fmt.Sprintf("BUTTER-HELPER %d 0123456789abcdef\n", helperapi.ServeProtocol) {
		t.Fatalf("hello %q", line)
	}
	for _, tc := range []struct {
		in      string
		ok      bool
		proto   int
		version string
	}{
		{"BUTTER-HELPER 1 abc", true, 1, "abc"},
		{"BUTTER-HELPER 7 v", true, 7, "v"},
		{"BUTTER-HELPER x abc", false, 0, ""},
		{"BUTTER-HELPER 1", false, 0, ""},
		{"Welcome BUTTER-HELPER 1 abc", false, 0, ""},
		{"", false, 0, ""},
	} {
		p, v, ok := helperapi.ParseServeHello(tc.in)
		if ok != tc.ok || p != tc.proto || v != tc.version {
			t.Errorf("ParseServeHello(%q) = %d, %q, %v", tc.in, p, v, ok)
		}
	}
	r := bufio.NewReader(strings.NewReader("motd\nBUTTER-HELPER 1 abc\n{\"jsonrpc\":\"2.0\"}"))
	p, v, junk, err := helperapi.ReadServeHello(r, 1024)
	rest, _ := io.ReadAll(r)
	if err != nil || p != 1 || v != "abc" || junk != "motd\n" || string(rest) != `{"jsonrpc":"2.0"}` {
		t.Fatalf("ReadServeHello: %d %q %q %v, rest %q", p, v, junk, err, rest)
	}
	_, _, _, err = helperapi.ReadServeHello(bufio.NewReader(strings.NewReader(strings.Repeat("junk\n", 100))), 64)
	if err == nil {
		t.Fatal("no hello in junk: no error")
	}
}

// Relay writes the hello line, then carries bytes both ways between its
// standard streams and the daemon's socket.
func TestRelay(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "helper.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Relay(ctx, sock, inR, outW) }()
	br := bufio.NewReader(outR)
	p, v, junk, err := helperapi.ReadServeHello(br, 1024)
	want, _ := SelfVersion()
	if err != nil || p != helperapi.ServeProtocol || v != want || junk != "" {
		t.Fatalf("hello: %d %q %q %v", p, v, junk, err)
	}
	io.WriteString(inW, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo: %q, %v", line, err)
	}
	inW.Close() // the operator hangs up
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Relay did not return after stdin closed")
	}
}

func TestRelayNoDaemon(t *testing.T) {
	err := Relay(context.Background(), filepath.Join(t.TempDir(), "none.sock"), strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "helper daemon") {
		t.Fatalf("got %v", err)
	}
}
