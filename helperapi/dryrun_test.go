package helperapi

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// A helper older than the dry run answers "method not found": the caller
// is told to upgrade it, not shown a bare protocol error.
func TestDryRunOldHelper(t *testing.T) {
	ours, theirs := net.Pipe()
	c := NewClient(context.Background(), ours)
	defer c.Close()
	go func() {
		defer theirs.Close()
		line, _ := bufio.NewReader(theirs).ReadString('\n')
		if !strings.Contains(line, MethodDryRun) {
			return
		}
		theirs.Write([]byte(`{"jsonrpc":"2.0","id":0,"error":{"code":-32601,"message":"no method helper.dry_run"}}` + "\n"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.DryRun(ctx, DryRunRequest{Remove: true})
	if !errors.Is(err, ErrNoDryRun) || !strings.Contains(err.Error(), "butter sync") {
		t.Fatalf("err = %v, want ErrNoDryRun telling to upgrade with butter sync", err)
	}
}
