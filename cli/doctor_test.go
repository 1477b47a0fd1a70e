package cli

import (
	"strings"
	"testing"
)

// TestDoctorAndShowExitCodes: doctor passes on a cloud with nothing in
// it; network show wants a network that exists.
func TestDoctorAndShowExitCodes(t *testing.T) {
	emptyCloud(t)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout for 0, stderr otherwise
	}{
		{[]string{"doctor"}, 0, "all checks passed"},
		{[]string{"doctor", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"network", "show"}, 2, "give the network's name"},
		{[]string{"network", "show", "blue"}, 1, `no network "blue"; ` + "`butter network list` shows them"},
		{[]string{"network", "show", "--help"}, 0, "--json"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := butter(t, Options{}, tc.args...)
			got := out
			if tc.code != 0 {
				got = errs
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Errorf("exit %d, want %d with %q; stdout %q, stderr %q", code, tc.code, tc.want, out, errs)
			}
		})
	}
}
