package sim

import (
	"context"
	"fmt"
	"io"
	"os/exec"
)

// place is where a Machine, a Probe or a Router runs commands: a network
// namespace of the lab and, for a machine, its mount namespace.
type place struct {
	lab     *Lab
	name    string // m1, p1, r1: the network namespace is <lab>-<name>
	kind    string // what errors put before the name: "" (a machine), "probe ", "router "
	mountNS string // the file its mount namespace is bound to; "" for the host's
}

func (pl place) netns() string { return pl.lab.Name + "-" + pl.name }

func (pl place) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return pl.lab.tools.nsCommand(ctx, netnsPath(pl.netns()), pl.mountNS, name, args...)
}

func (pl place) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := Output(pl.command(ctx, name, args...))
	if err != nil {
		return out, fmt.Errorf("on %s%s: %w", pl.kind, pl.name, err)
	}
	return out, nil
}

func (pl place) start(ctx context.Context, out io.Writer, name string, args []string) (*Process, error) {
	return pl.lab.start(ctx, pl.name, netnsPath(pl.netns()), pl.mountNS, out, name, args)
}
