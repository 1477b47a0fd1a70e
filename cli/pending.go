package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
)

// waitFlag adds --wait to a verb that changes the cloud.
func waitFlag(cmd *cobra.Command, wait *bool) {
	cmd.Flags().BoolVar(wait, "wait", false, "fail (exit 1) when a machine is behind: away, or could not apply the change")
}

// behind prints the machines a change left behind, on stderr, and
// decides the exit: a machine that answered but failed to apply is an
// error; one that is away is one only with --wait.
func (s *session) behind(out cloud.Outcome, wait bool) error {
	for _, b := range out.Behind {
		fmt.Fprintf(s.stderr, "butter: %s\n", b)
	}
	failed, away := out.Split()
	switch {
	case len(failed) > 0:
		return fmt.Errorf("the change is recorded, but %s could not apply it (see above)", strings.Join(failed, ", "))
	case wait && len(away) > 0:
		return fmt.Errorf("the change is recorded, but %s %s behind (--wait)", strings.Join(away, ", "), isAre(len(away)))
	}
	return nil
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
