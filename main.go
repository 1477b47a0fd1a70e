// Command butter turns ordinary Linux machines into one private cloud. The
// same binary is the operator's tool (package cli) and, as `butter helper`,
// the helper that runs on each machine (package plumbing).
package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cli"
	"github.com/butter-cloud/butter/plumbing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, cli.Options{
		Commands: []*cobra.Command{helperCommand()},
	})
	stop()
	os.Exit(code)
}

// helperCommand is `butter helper ...`, the machine side: every argument
// after `helper` goes to plumbing as it is, flags included.
func helperCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "helper VERB ...",
		Short:              "The machine side, run on each machine over SSH (butter helper --help lists its verbs)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := plumbing.RunCommand(cmd.Context(), args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			if errors.Is(err, flag.ErrHelp) {
				return nil // a verb's -h: its flags are printed
			}
			return err
		},
	}
}
