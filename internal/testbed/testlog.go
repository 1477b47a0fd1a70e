package testbed

import (
	"strings"
	"testing"
)

// LogWriter sends what is written to it (a command's output) to the test
// log, line by line, each line after prefix.
type LogWriter struct {
	T      testing.TB
	Prefix string
}

func (w LogWriter) Write(p []byte) (int, error) {
	for l := range strings.Lines(string(p)) {
		w.T.Log(w.Prefix + strings.TrimRight(l, "\n"))
	}
	return len(p), nil
}
