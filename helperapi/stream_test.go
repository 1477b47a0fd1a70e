package helperapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// endless yields its pattern forever and counts what was read.
type endless struct {
	pattern string
	n       int64
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.pattern[int(e.n+int64(i))%len(e.pattern)]
	}
	e.n += int64(len(p))
	return len(p), nil
}

type readOnly struct{ io.Reader }

func (readOnly) Write(p []byte) (int, error) { return len(p), nil }
func (readOnly) Close() error                { return nil }

func TestStreamBoundsEachMessage(t *testing.T) {
	// Messages under the bound pass, one after another, whatever the
	// decoder buffered ahead.
	small := strings.Repeat(`{"jsonrpc":"2.0","method":"m","params":"`+strings.Repeat("x", 900)+`"}`+"\n", 50)
	s := NewStream(readOnly{strings.NewReader(small)}, 1024)
	for i := range 50 {
		var v map[string]any
		if err := s.ReadObject(&v); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	// A never-ending string is refused once past the bound, having read
	// no more than the bound and a buffer.
	const max = 1 << 20
	src := &endless{pattern: "x"}
	s = NewStream(readOnly{io.MultiReader(strings.NewReader(`{"params":"`), src)}, max)
	var v map[string]any
	err := s.ReadObject(&v)
	if !errors.Is(err, ErrMessageTooLarge) || !errors.Is(s.Err(), ErrMessageTooLarge) {
		t.Fatalf("endless message: %v (Err %v); want ErrMessageTooLarge", err, s.Err())
	}
	if src.n > max+64<<10 {
		t.Errorf("read %d bytes of an endless message; want about %d", src.n, max)
	}
	// Malformed JSON says so.
	s = NewStream(readOnly{strings.NewReader("{\x1b[2J}")}, max)
	if err := s.ReadObject(&v); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed: %v", err)
	}
}

// A helper that answers with an oversized message: the call fails saying
// so, not with a bare "closed", and the connection is closed.
func TestClientRefusesOversizedAnswer(t *testing.T) {
	ours, theirs := net.Pipe()
	defer theirs.Close()
	c := NewClient(context.Background(), ours)
	defer c.Close()
	go func() {
		// Read the request, then answer with an endless result.
		bufio.NewReader(theirs).ReadString('\n')
		theirs.Write([]byte(`{"jsonrpc":"2.0","id":0,"result":"`))
		buf := []byte(strings.Repeat("A", 64<<10))
		for {
			if _, err := theirs.Write(buf); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.PublicKey(ctx)
	if err == nil || !strings.Contains(err.Error(), "longer than") || !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("PublicKey: %v; want the oversized answer named", err)
	}
	if _, err := c.Facts(ctx); err == nil {
		t.Error("the connection still answers after an oversized message")
	}
}

func TestReadServeHelloBounded(t *testing.T) {
	// A line that never ends: refused after about limit bytes.
	src := &endless{pattern: "y"}
	r := bufio.NewReaderSize(src, 4096)
	_, _, junk, err := ReadServeHello(r, 64<<10)
	if err == nil || !strings.Contains(err.Error(), "no BUTTER-HELPER hello line") {
		t.Fatalf("endless line: %v", err)
	}
	if src.n > 64<<10+8192 || len(junk) > 64<<10 {
		t.Errorf("read %d bytes, kept %d, of an endless line; want about %d", src.n, len(junk), 64<<10)
	}
	// Junk lines, then the hello (CRLF too), then the protocol.
	r = bufio.NewReaderSize(strings.NewReader("motd\n"+strings.Repeat("z", 10000)+"\nBUTTER-HELPER 2 abc\r\n{}"), 16)
	p, v, junk, err := ReadServeHello(r, 64<<10)
	rest, _ := io.ReadAll(r)
	if err != nil || p != 2 || v != "abc" || !strings.HasPrefix(junk, "motd\nzzz") || string(rest) != "{}" {
		t.Errorf("hello after junk: %d %q %d bytes of junk, %v, rest %q", p, v, len(junk), err, rest)
	}
}
