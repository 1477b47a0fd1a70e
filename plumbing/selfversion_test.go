package plumbing

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// The version is computed once and kept beside the file; it is read from
// there while the file stays the same, and only from a file no one else
// may write; a changed file is hashed again.
func TestVersionOfKeepsTheVersion(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "butter-x")
	if err := os.WriteFile(exe, []byte("one binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := func(content string) string {
		v, err := helperapi.VersionOf(bytes.NewReader([]byte(content)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	kept := exe + versionSuffix
	if v, err := versionOf(exe); err != nil || v != want("one binary") {
		t.Fatalf("first: %q, %v; want %s", v, err, want("one binary"))
	}
	b, err := os.ReadFile(kept)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(b)), want("one binary")) {
		t.Fatalf("kept: %q, %v", b, err)
	}

	// Read from the kept file: a planted version with the right stamp
	// comes back (proof that the file is not hashed again).
	stamp, _, _ := strings.Cut(string(b), " ")
	planted := "0123456789abcdef"
	if err := os.WriteFile(kept, []byte(stamp+" "+planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, _ := versionOf(exe); v != planted {
		t.Errorf("with a kept version: %q, want the kept %s", v, planted)
	}

	tests := []struct {
		name   string
		damage func()
		want   string
	}{
		{"a kept file others may write is not taken", func() { os.Chmod(kept, 0o666) }, want("one binary")},
		{"a kept file of another stamp is not taken", func() {
			os.WriteFile(kept, []byte("1/2/3 "+planted+"\n"), 0o600)
		}, want("one binary")},
		{"garbage is not taken", func() { os.WriteFile(kept, []byte(stamp+" not-a-version\n"), 0o600) }, want("one binary")},
		{"a changed binary is hashed again", func() {
			os.WriteFile(kept, []byte(stamp+" "+planted+"\n"), 0o600)
			os.WriteFile(exe, []byte("another binary, longer"), 0o755)
		}, want("another binary, longer")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.damage()
			if v, err := versionOf(exe); err != nil || v != tt.want {
				t.Errorf("version %q, %v; want %s", v, err, tt.want)
			}
		})
	}
}
