// Command butter turns ordinary Linux machines into one private cloud. The
// same binary is the operator's tool and, as `butter helper`, the helper
// that runs on each machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/butter-cloud/butter/plumbing"
)

const usage = `usage: butter [--inventory FILE] [VERB ...]

With no verb, butter opens the dashboard.

  machine add NAME --address HOST [--port N] [--user U] [--identity FILE] [--endpoint HOST:PORT]
              [--accept-new-host-key | --host-key SHA256:...] [--yes]
  machine list [--json]               machine remove NAME
  network create NAME --subnet CIDR [--machines A,B,...]
  network list [--json]               network remove NAME
  vm create NAME --machine M --network N --image IMAGE [--cpus N] [--memory SIZE] [--disk SIZE]
            [--ip ADDR] [--ssh-key FILE]
  vm list [--json]                    vm start|stop|reboot|remove NAME    vm console NAME
  lab up [--machines N] [--nat K]     lab down
  helper ...                          the machine side (see butter helper --help)

The inventory is $BUTTER_INVENTORY, else ~/.config/butter/inventory.yaml.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "butter:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.interactive = true
	}
	fs := flag.NewFlagSet("butter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	fs.StringVar(&c.inventory, "inventory", "", "the inventory file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		return c.dashboard()
	}
	switch args[0] {
	case "helper":
		return plumbing.RunCommand(ctx, args[1:], stdin, stdout, stderr)
	case "machine":
		return c.machine(args[1:])
	case "network":
		return c.network(args[1:])
	case "vm":
		return c.vm(args[1:])
	case "lab":
		return c.lab(args[1:])
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown verb %q; see butter --help", args[0])
}
