package helperapi

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// A binary's version is the first 16 hex digits of its sha256, from the
// bytes or from a sum already made.
func TestVersionOf(t *testing.T) {
	for _, b := range []string{"", "a helper binary", strings.Repeat("x", 1<<20)} {
		v, err := VersionOf(strings.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(b))
		if want := fmt.Sprintf("%x", sum)[:16]; v != want || VersionOfSum(sum) != want {
			t.Errorf("version of %d bytes: %q, from the sum %q; want %s", len(b), v, VersionOfSum(sum), want)
		}
	}
}
