package plumbing

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/butter-cloud/butter/internal/testbed"
)

// TestEchoLoopback: the probe's echo, don't-fragment set, is answered on
// loopback at a small and a full size, and an echo bigger than any MTU
// is refused with the reason, not taken for a lost reply.
func TestEchoLoopback(t *testing.T) {
	testbed.Require(t, os.Geteuid() == 0, "needs root for a raw ICMP socket")
	ctx := context.Background()
	lo := netip.MustParseAddr("127.0.0.1")
	for _, size := range []int{smallEcho, 1420} {
		if rtt, err := echo(ctx, lo, size); err != nil || rtt <= 0 {
			t.Errorf("echo of %d bytes to %s: %v, %v", size, lo, rtt, err)
		}
	}
	if _, err := echo(ctx, lo, 70000); err == nil || errors.Is(err, errNoReply) {
		t.Errorf("an echo bigger than any MTU: %v, want a send error", err)
	}
}
