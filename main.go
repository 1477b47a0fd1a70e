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

	"github.com/butter-cloud/butter/plumbing"
)

const usage = `usage: butter VERB ...

  helper   the machine side (see butter helper --help)
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
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("the dashboard is not built yet; give a verb")
	}
	switch args[0] {
	case "helper":
		return plumbing.RunCommand(ctx, args[1:], stdin, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown verb %q; see butter --help", args[0])
}
