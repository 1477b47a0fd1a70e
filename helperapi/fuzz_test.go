package helperapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// The spec validator takes any bytes without a panic; a spec it accepts
// survives a round trip through JSON and is accepted again.
func FuzzParseSpec(f *testing.F) {
	good, _ := json.Marshal(testSpec(Network{Name: "blue", ID: 1, Tunnel: "auto", Peers: []string{"m2"}}))
	f.Add(good)
	if golden, err := os.ReadFile("testdata/wire.golden"); err == nil {
		for line := range strings.Lines(string(golden)) {
			if _, body, ok := strings.Cut(line, " {"); ok {
				f.Add([]byte("{" + body))
			}
		}
	}
	f.Add([]byte(`{"mesh":{"address":"10.99.0.1/16"},"unknown":1}`))
	f.Add([]byte(`{"mesh":{"address":"10.99.0.1/99"},"networks":[{"name":"../x","id":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal an accepted spec: %v", err)
		}
		if _, err := ParseSpec(again); err != nil {
			t.Fatalf("an accepted spec is refused after a round trip: %v\n%s", err, again)
		}
	})
}

// The operator's side of the protocol takes any answer from a helper
// without a panic or a hang: a call ends with a result or an error.
func FuzzClientResponse(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":0,"result":[{"name":"web","state":"running"}]}` + "\n"))
	f.Add([]byte(`{"jsonrpc":"2.0","id":0,"error":{"code":-32010,"message":"vm name \"../x\": \u001b[2J"}}` + "\n"))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"vm.event","params":{"vm":"web","event":"started"}}` + "\n" +
		`{"jsonrpc":"2.0","id":0,"result":null}` + "\n"))
	f.Add([]byte(`{"jsonrpc":"2.0","id":0,"result":{"name":1}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"0","result":[]}{"id":0}`))
	f.Add([]byte("\x1b[2J not json"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		ours, theirs := net.Pipe()
		c := NewClient(context.Background(), ours)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer theirs.Close()
			bufio.NewReader(theirs).ReadString('\n')
			theirs.Write(answer)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		c.ListVMs(ctx)
		c.Close()
		<-done
	})
}
