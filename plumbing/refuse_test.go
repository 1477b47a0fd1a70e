package plumbing

import (
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// countingSide is a recorder that counts the VM calls that reach it.
type countingSide struct {
	recorder
	actions, creates int
}

func (c *countingSide) VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error) {
	c.actions++
	return c.recorder.VMAction(ctx, a)
}

func (c *countingSide) CreateVM(ctx context.Context, req helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	c.creates++
	return c.recorder.CreateVM(ctx, req, progress)
}

// A VM name that is not a name (a path, an escape, a long one) is refused
// by the RPC server with CodeInvalid before the machine side sees it: the
// helper never builds a disk, seed or console log path from it.
func TestRPCRefusesBadVMNames(t *testing.T) {
	ctx := context.Background()
	sock, l := listenTemp(t)
	side := &countingSide{}
	c := serveAndDial(t, ctx, l, sock, side)
	for _, name := range []string{"../x", "../../etc/passwd", "a/b", "", ".", "web\x1b[2J", strings.Repeat("a", 40), "Web"} {
		for _, action := range []string{"start", "stop", "reboot", "remove"} {
			_, err := c.VMAction(ctx, helperapi.VMActionRequest{Name: name, Action: action})
			if !helperapi.IsInvalid(err) || !strings.Contains(err.Error(), "vm name") {
				t.Errorf("%s %q: %v; want a CodeInvalid refusal that names the rule", action, name, err)
			}
		}
		_, err := c.CreateVM(ctx, helperapi.VMRequest{Name: name, Network: "blue", Image: "debian-12", Address: "10.0.0.5"}, nil)
		if !helperapi.IsInvalid(err) {
			t.Errorf("create %q: %v; want a CodeInvalid refusal", name, err)
		}
	}
	if side.actions != 0 || side.creates != 0 {
		t.Errorf("the machine side heard %d actions and %d creates with bad names; want none", side.actions, side.creates)
	}
	if _, err := c.VMAction(ctx, helperapi.VMActionRequest{Name: "web", Action: "stop"}); err != nil || side.actions != 1 {
		t.Errorf("a good name: %v, %d calls", err, side.actions)
	}
}

func TestParseNamedRefusesPaths(t *testing.T) {
	for _, name := range []string{"../x", "a/b", "x\x07"} {
		c := &command{}
		c.fs = flag.NewFlagSet("vm console", flag.ContinueOnError)
		if _, err := c.parseNamed([]string{name}); err == nil || !strings.Contains(err.Error(), "vm name") {
			t.Errorf("parseNamed(%q): %v; want a refusal", name, err)
		}
	}
}
