package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/printable"
	"golang.org/x/crypto/ssh"
)

// hostileServe answers `helper serve` as a compromised machine might: a
// proper hello (unless hello is given instead), then, for each request,
// whatever answer writes. written counts the bytes it got out.
func hostileServe(hello func(ch ssh.Channel, gone <-chan struct{}), answer func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{}), written *atomic.Int64) func(string, ssh.Channel, <-chan struct{}) int {
	return func(cmd string, ch ssh.Channel, gone <-chan struct{}) int {
		if !strings.HasSuffix(unwire(cmd), " helper serve") {
			return shellHandler(cmd, ch, gone)
		}
		if hello != nil {
			hello(countingChannel{ch, written}, gone)
			return 0
		}
		fmt.Fprintf(ch, "%s %d %s\n", helperapi.ServeMagic, helperapi.ServeProtocol, "0123456789abcdef")
		r := bufio.NewReader(ch)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return 0
			}
			var req struct{ ID json.RawMessage }
			json.Unmarshal(line, &req)
			answer(req.ID, countingChannel{ch, written}, gone)
		}
	}
}

type countingChannel struct {
	ssh.Channel
	n *atomic.Int64
}

func (c countingChannel) Write(p []byte) (int, error) {
	n, err := c.Channel.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// endlessly writes chunk until the operator stops reading.
func endlessly(ch ssh.Channel, gone <-chan struct{}, chunk []byte) {
	for {
		select {
		case <-gone:
			return
		default:
		}
		if _, err := ch.Write(chunk); err != nil {
			return
		}
	}
}

// A compromised machine answers with oversized, malformed, escape-laden
// and never-ending responses: every call ends with a clear error, the
// operator reads no more than its bounds, and what it would print of the
// machine's words holds no control character.
func TestHostileHelper(t *testing.T) {
	const version = "0123456789abcdef"
	big := []byte(strings.Repeat("A", 64<<10))
	for _, tc := range []struct {
		name   string
		hello  func(ch ssh.Channel, gone <-chan struct{})
		answer func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{})
		want   string // in the error
		is     error
	}{
		{name: "endless hello line", want: "no BUTTER-HELPER hello line",
			hello: func(ch ssh.Channel, gone <-chan struct{}) { endlessly(ch, gone, big) }},
		{name: "endless junk lines", want: "no BUTTER-HELPER hello line",
			hello: func(ch ssh.Channel, gone <-chan struct{}) { endlessly(ch, gone, []byte("junk\x1b[2J\n")) }},
		{name: "oversized answer", want: "longer than", is: helperapi.ErrMessageTooLarge,
			answer: func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{}) {
				fmt.Fprintf(ch, `{"jsonrpc":"2.0","id":%s,"result":{"uplink":"`, id)
				endlessly(ch, gone, big)
			}},
		{name: "endless whitespace", want: "longer than", is: helperapi.ErrMessageTooLarge,
			answer: func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{}) {
				endlessly(ch, gone, []byte(strings.Repeat(" ", 64<<10)))
			}},
		{name: "malformed answer", want: "malformed",
			answer: func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{}) {
				fmt.Fprintf(ch, "\x1b]0;owned\x07\x1b[2J{not json\n")
			}},
		{name: "escape-laden error", want: "disk full",
			answer: func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{}) {
				fmt.Fprintf(ch, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32012,"message":"disk full\u001b[2J\u001b]52;c;ZXZpbA==\u0007\r\u009b"}}`+"\n", id)
			}},
		{name: "never-ending trickle", is: context.DeadlineExceeded,
			answer: func(id json.RawMessage, ch ssh.Channel, gone <-chan struct{}) {
				for {
					select {
					case <-gone:
						return
					case <-time.After(10 * time.Millisecond):
					}
					if _, err := ch.Write([]byte(" ")); err != nil {
						return
					}
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var written atomic.Int64
			f.srv.handler = hostileServe(tc.hello, tc.answer, &written)
			c := f.client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			err := func() error {
				m, err := Connect(ctx, c, Helper{Path: "/var/lib/butter/bin/butter-" + version, Version: version})
				if err != nil {
					return err
				}
				defer m.Close()
				cl, err := m.Client(ctx)
				if err != nil {
					return err
				}
				call, cancelCall := context.WithTimeout(ctx, 2*time.Second)
				defer cancelCall()
				_, err = cl.Facts(call)
				return err
			}()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			t.Logf("error after %s: %.200s; allocated %d MiB, the machine got %d KiB out",
				time.Since(start).Round(time.Millisecond), printable.String(fmt.Sprint(err)),
				(after.TotalAlloc-before.TotalAlloc)>>20, written.Load()>>10)
			if err == nil || !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("got %v; want an error with %q (%v)", err, tc.want, tc.is)
			}
			if shown := printable.String(err.Error()); strings.ContainsAny(shown, "\x1b\x07\r\u009b") {
				t.Errorf("the error as shown still holds control characters: %q", shown)
			}
			// The message bound is 16 MiB; the decoder's buffer doubles
			// up to it. An unbounded read would go on until the timeout.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
				t.Errorf("allocated %d MiB to refuse a hostile answer", alloc>>20)
			}
			if w := written.Load(); w > helperapi.MaxMessageSize+16<<20 {
				t.Errorf("read %d MiB of a hostile answer", w>>20)
			}
		})
	}
}
