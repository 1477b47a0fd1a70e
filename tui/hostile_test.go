package tui

import (
	"strings"
	"testing"
)

// What machines answer (VM names, states, errors) is drawn with its
// control characters shown escaped, so it cannot redraw the dashboard.
func TestRemoteTextEscaped(t *testing.T) {
	r := row{cells: []cell{{text: "web\x1b[2J\x1b[H"}, {text: "running\x07"}}}
	for j := range r.cells {
		if got := cellText(r, j); strings.ContainsAny(got, "\x1b\x07") {
			t.Errorf("cell %d drawn as %q", j, got)
		}
	}
	if got := oneLine("failed:\x1b]52;c;ZXZpbA==\x07 \r\n  again"); strings.ContainsAny(got, "\x1b\x07\r\n") {
		t.Errorf("status drawn as %q", got)
	}
}
