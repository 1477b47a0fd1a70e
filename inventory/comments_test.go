package inventory

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const body = "version: 1\n\nmachines:\n  - name: alpha # the old one\n    address: alpha.example.com\n    mesh_ip: 10.99.0.1\n"

// TestUpdateKeepsTopCommentsAndMode: a file a user wrote keeps its
// permissions and the comments at its top through butter's rewrite; its
// .bak is the file as it was, with the same permissions.
func TestUpdateKeepsTopCommentsAndMode(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		mode    fs.FileMode
		wantTop string // what the new file starts with
	}{
		{"comments at the top", "# my lab\n#   two machines\n\n" + body, 0o644, "# my lab\n#   two machines\n\nversion: 1\n"},
		{"indented and blank lines", "\n  # note\n\n\n" + body, 0o640, "\n  # note\n\n\nversion: 1\n"},
		{"no comment: butter's header", body, 0o644, header + "version: 1\n"},
		{"blank lines only: butter's header", "\n\n" + body, 0o600, header + "version: 1\n"},
		{"butter's own header", header + body, 0o600, header + "version: 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "inventory.yaml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			if err := Update(context.Background(), path, addMachine("beta")); err != nil {
				t.Fatal(err)
			}
			got := string(mustRead(t, path))
			if !strings.HasPrefix(got, tt.wantTop) {
				t.Errorf("the file starts\n%s\nwant\n%s", got[:min(len(got), len(tt.wantTop)+20)], tt.wantTop)
			}
			if strings.Contains(got, "the old one") {
				t.Errorf("a comment after the top was kept; only the top block is:\n%s", got)
			}
			if diff := cmp.Diff(tt.file, string(mustRead(t, path+".bak"))); diff != "" {
				t.Errorf(".bak is not the file as it was (-want +got):\n%s", diff)
			}
			for _, p := range []string{path, path + ".bak"} {
				if fi, err := os.Stat(p); err != nil || fi.Mode() != tt.mode {
					t.Errorf("%s: %v, %v; want mode %v", p, fi, err, tt.mode)
				}
			}
			// Written again with no change: nothing to write, since the
			// kept comments make the same bytes.
			again := mustRead(t, path)
			if err := Update(context.Background(), path, func(*Inventory) error { return nil }); err != nil {
				t.Fatal(err)
			}
			if string(mustRead(t, path)) != string(again) || string(mustRead(t, path+".bak")) != tt.file {
				t.Errorf("an update with no change rewrote the file or its .bak")
			}
		})
	}
}

func TestTopComments(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"version: 1\n", ""},
		{"# a\nversion: 1\n", "# a\n"},
		{"# a\n\n# b\n\nversion: 1\n", "# a\n\n# b\n\n"},
		{"\t# a\r\nversion: 1\n", "\t# a\r\n"},
		{"# only a comment, no newline", ""},
		{"---\n# a\nversion: 1\n", ""},
	} {
		if got := string(topComments([]byte(tt.in))); got != tt.want {
			t.Errorf("topComments(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
