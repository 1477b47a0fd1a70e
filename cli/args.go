package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/spf13/cobra"
)

// The pieces the verbs are built from: nouns, what arguments a verb takes,
// and required flags.

// verbs accepts no arguments but a verb of cmd, and says so.
func verbs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown verb %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return errors.New(msg)
}

// oneName accepts exactly one argument, the name of a what, such as "VM".
func oneName(what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return fmt.Errorf("give the %s's name", what)
		case len(args) > 1:
			return fmt.Errorf("unexpected argument %q after the %s's name: give other values with their flags", args[1], what)
		}
		return nil
	}
}

// noArgs accepts no arguments.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q", args[0])
	}
	return nil
}

// require marks cmd's flags as required, which its help says.
func require(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(err) // no such flag: a mistake in this package
		}
		cmd.Flags().Lookup(n).Usage += " (required)"
	}
}

// noun is a command whose verbs are its subcommands; alone, it prints its
// help.
func noun(name, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:         name,
		Short:       short,
		Args:        verbs,
		Annotations: map[string]string{nounAnnotation: "true"},
		RunE:        func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(subs...)
	return c
}

// nounAnnotation marks nouns, whose usage shows only their verbs.
const nounAnnotation = "butter-noun"

// listCommand is a noun's list verb: list prints the noun's rows, as one
// JSON array with --json, waiting up to --timeout for each machine.
func (s *session) listCommand(short string, list func(ctx context.Context, cl *cloud.Cloud, o listOptions) error) *cobra.Command {
	o := listOptions{wait: listTimeout}
	cmd := &cobra.Command{
		Use:   "list",
		Short: short,
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.wait <= 0 {
				return usageErrorf("--timeout %s: give how long to wait for each machine, above zero, such as 30s", o.wait)
			}
			return s.withCloud(func(cl *cloud.Cloud) error { return list(cmd.Context(), cl, o) })
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON array")
	cmd.Flags().DurationVar(&o.wait, "timeout", listTimeout, "wait up to `DURATION` for each machine's answer, then list it as away")
	return cmd
}

// listOptions are a list verb's flags.
type listOptions struct {
	json bool          // --json
	wait time.Duration // --timeout: for each machine
}
