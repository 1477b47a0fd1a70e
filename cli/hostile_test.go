package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/spf13/cobra"
)

// A machine's error text reaches the terminal with its escape sequences
// shown, not obeyed.
func TestReportEscapesRemoteText(t *testing.T) {
	var out bytes.Buffer
	remote := &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: "bad\x1b]0;owned\x07\x1b[2J\rname"}
	code := report(&out, &cobra.Command{Use: "butter"}, &failure{fmt.Errorf("vm web on m1: %w", remote)})
	if code != exitFailure || strings.ContainsAny(out.String(), "\x1b\x07\r") {
		t.Errorf("report wrote %q (exit %d); want no control characters", out.String(), code)
	}
	if !strings.Contains(out.String(), `bad\x1b]0;owned\a\x1b[2J\rname`) {
		t.Errorf("report wrote %q; want the text shown escaped", out.String())
	}
	var tab bytes.Buffer
	s := &session{stdout: &tab}
	s.table("NAME\tSTATE", [][]string{{"web\x1b[31m", "running\x9b"}})
	if strings.ContainsAny(tab.String(), "\x1b\x9b") {
		t.Errorf("table wrote %q", tab.String())
	}
}
