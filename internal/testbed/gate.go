package testbed

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/lab/sim"
)

// Require skips t with why unless ok. With CI=true it fails t instead, so
// that a tier never silently vanishes from CI.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but this test cannot run: %s", why)
	}
	t.Skip(why)
}

// NeedRoot requires root (namespaces, tap devices, caches under
// /var/cache/butter); see Require.
func NeedRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root")
}

// NeedPrograms requires programs, each a bare name (looked up on PATH and
// in the sbin and bin folders) or an absolute path; see Require.
func NeedPrograms(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := sim.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	Require(t, len(missing) == 0, fmt.Sprintf("needs %s (see .ci/deps)", strings.Join(missing, ", ")))
}

// NeedLab requires what a lab needs: root and the programs sim.Up runs;
// see Require.
func NeedLab(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root to make network and mount namespaces")
	err := sim.CheckTools()
	Require(t, err == nil, fmt.Sprint(err))
}

// NeedCloudImageTools requires what BuildCloudImage runs (see
// CloudImageTools) and, with tun, /dev/net/tun for the taps a booted image
// is plugged into; see Require.
func NeedCloudImageTools(t testing.TB, tun bool) {
	t.Helper()
	missing := CloudImageTools()
	if _, err := os.Stat("/dev/net/tun"); tun && err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	Require(t, len(missing) == 0, "missing "+strings.Join(missing, ", ")+" (see .ci/deps)")
}

// Applies skips t with why unless ok, even with CI=true: it is for a case
// that does not exist on this machine (a test of a broken /dev/kvm where
// there is no /dev/kvm at all), not for a missing prerequisite, which
// Require turns into a failure under CI.
func Applies(t testing.TB, ok bool, why string) {
	t.Helper()
	if !ok {
		t.Skip("does not apply here: " + why)
	}
}
