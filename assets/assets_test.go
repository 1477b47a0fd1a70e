package assets

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestHelperUnitGolden(t *testing.T) {
	got, err := HelperUnit{Binary: "/var/lib/butter/bin/butter-v1", StateDir: "/var/lib/butter",
		Socket: "/run/butter/helper.sock"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", HelperUnitName)
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("unit differs from %s (go test ./assets -update to accept):\n%s", golden, got)
	}
}

func TestHelperUnitRefusesOddPaths(t *testing.T) {
	for _, bin := range []string{"butter", "/opt/my butter/butter", "/x;rm -rf /", ""} {
		_, err := HelperUnit{Binary: bin, StateDir: "/var/lib/butter", Socket: "/run/butter/helper.sock"}.Render()
		if err == nil || !strings.Contains(err.Error(), "absolute path") {
			t.Errorf("binary %q: %v, want a refusal that says what to give", bin, err)
		}
	}
}
