package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

// waitFlag adds --wait to a verb that changes the cloud.
func waitFlag(cmd *cobra.Command, wait *bool) {
	cmd.Flags().BoolVar(wait, "wait", false, "fail (exit 1) when a machine is behind: away, or could not apply the change")
}

// dryRunFlag gives a changing verb --dry-run (see printDryRun).
func dryRunFlag(cmd *cobra.Command, dry *bool) {
	cmd.Flags().BoolVar(dry, "dry-run", false, "change nothing: print, per machine, the commands that would do the same by hand")
}

// behind prints the machines a change left behind, on stderr, and
// decides the exit: a machine that answered but failed to apply is an
// error; one that is away is one only with --wait.
func (s *session) behind(out cloud.Outcome, wait bool) error {
	return s.stillBehind(out, wait, "the change is recorded, but %s could not apply it (see above)",
		"the change is recorded, but %s %s behind (--wait)")
}

// stillBehind is behind with the error texts given: failed takes the
// machines, away the machines and is/are.
func (s *session) stillBehind(out cloud.Outcome, wait bool, failedText, awayText string) error {
	for _, b := range out.Behind {
		fmt.Fprintf(s.stderr, "butter: %s\n", printable.String(fmt.Sprint(b)))
	}
	failed, away := out.Split()
	switch {
	case len(failed) > 0:
		return fmt.Errorf(failedText, strings.Join(failed, ", "))
	case wait && len(away) > 0:
		return fmt.Errorf(awayText, strings.Join(away, ", "), isAre(len(away)))
	}
	return nil
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
