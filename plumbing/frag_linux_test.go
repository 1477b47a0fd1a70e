package plumbing_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
)

// The chain's "no IP fragments" check reads counters that must move when
// fragments are made: the control. Two namespaces joined by a veth at MTU
// 1500; a 3000-byte echo without don't-fragment is cut in fragments by the
// sender and put together by the receiver, and fragCounters sees both.
func TestFragCountersSeeFragments(t *testing.T) {
	testbed.NeedRoot(t)
	testbed.NeedPrograms(t, "ip", "ping")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := testbed.LabName("fra"), testbed.LabName("frb")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	for _, ns := range []string{a, b} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run("ip", "-n", a, "link", "add", "fa", "type", "veth", "peer", "name", "fb", "netns", b)
	run("ip", "-n", a, "addr", "add", "192.0.2.1/24", "dev", "fa")
	run("ip", "-n", b, "addr", "add", "192.0.2.2/24", "dev", "fb")
	run("ip", "-n", a, "link", "set", "fa", "up")
	run("ip", "-n", b, "link", "set", "fb", "up")
	counters := func(ns string) map[string]int {
		t.Helper()
		got, err := fragCounters(run("ip", "netns", "exec", ns, "cat", "/proc/net/snmp"))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if c := counters(a); c["FragCreates"] != 0 {
		t.Fatalf("a fresh namespace has made fragments already: %v", c)
	}
	run("ip", "netns", "exec", a, "ping", "-c", "1", "-W", "5", "-M", "dont", "-s", "3000", "192.0.2.2")
	sent, got := counters(a), counters(b)
	t.Logf("sender %v, receiver %v", sent, got)
	if sent["FragCreates"] < 2 || sent["FragOKs"] < 1 {
		t.Errorf("the sender's counters did not move after a fragmenting echo: %v", sent)
	}
	if got["ReasmOKs"] < 1 {
		t.Errorf("the receiver's counters did not move after reassembling: %v", fmt.Sprint(got))
	}
}
