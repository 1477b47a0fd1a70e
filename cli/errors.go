package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/butter-cloud/butter/internal/printable"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitFailure = 1 // the work failed
	exitUsage   = 2 // the command line was wrong
)

// usageError is a wrong command line found by a verb itself, such as a
// flag value it cannot read.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// failure is an error of the work a verb set out to do.
type failure struct{ err error }

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// exitStatus is the exit status of a program butter ran in its place
// (ssh, for vm ssh), passed on as butter's own without a message: the
// program has spoken for itself.
type exitStatus struct{ code int }

func (e *exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// markFailures makes the errors of c's RunE failures, except its usage
// errors. What cobra itself refuses (unknown verbs and flags, missing
// arguments and flags) is a usage error.
func markFailures(c *cobra.Command) {
	run := c.RunE
	if run == nil {
		return
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		err := run(cmd, args)
		var u *usageError
		if err == nil || errors.As(err, &u) {
			return err
		}
		return &failure{err}
	}
}

// report prints err, if any, for cmd, and returns the exit code.
func report(w io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return 0
	}
	if es := (*exitStatus)(nil); errors.As(err, &es) {
		return es.code
	}
	// An error can carry a machine's words: shown, never obeyed.
	msg := printable.String(strings.TrimRight(err.Error(), "\n"))
	if !strings.HasPrefix(msg, "butter ") { // the helper's say "butter helper: ..."
		msg = "butter: " + msg
	}
	var f *failure
	if errors.As(err, &f) {
		fmt.Fprintln(w, msg)
		return exitFailure
	}
	fmt.Fprintf(w, "%s\nsee '%s --help'\n", msg, cmd.CommandPath())
	return exitUsage
}
