package plumbing

import (
	"errors"
	"testing"
)

func TestExplainErrno(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"read: wguser: errno=-98", "read: wguser: errno=-98 (address already in use)"},
		{"read: wguser: errno=22", "read: wguser: errno=22 (invalid argument)"},
		{"read: wguser: errno=0", "read: wguser: errno=0"},
		{"no such device", "no such device"},
	} {
		in := errors.New(tc.in)
		got := explainErrno(in)
		if got.Error() != tc.want || !errors.Is(got, in) {
			t.Errorf("explainErrno(%q) = %q, want %q wrapping the original", tc.in, got, tc.want)
		}
	}
}
