package plumbing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureStateDir(t *testing.T) {
	tests := []struct {
		name     string
		make     func(t *testing.T, dir string)
		wantErr  string
		wantMode os.FileMode
	}{
		{name: "missing: made private", make: func(*testing.T, string) {}, wantMode: 0o700},
		{name: "private: kept", make: mkdirMode(0o700), wantMode: 0o700},
		{name: "readable by others: made private", make: mkdirMode(0o755), wantMode: 0o700},
		{name: "writable by others: refused", make: mkdirMode(0o777), wantErr: "writable by others (mode 0777)"},
		{name: "writable by the group: refused", make: mkdirMode(0o770), wantErr: "chmod 0700"},
		{name: "a file: refused", make: func(t *testing.T, dir string) {
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "not a folder"},
		{name: "another user's: refused", make: func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a folder away")
			}
			mkdirMode(0o700)(t, dir)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "belongs to user 65534"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			tt.make(t, dir)
			err := ensureStateDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("err = %v; want one naming %s and saying %q", err, dir, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(dir)
			if err != nil || fi.Mode().Perm() != tt.wantMode {
				t.Fatalf("mode %v (%v); want %v", fi.Mode().Perm(), err, tt.wantMode)
			}
		})
	}
}

// mkdirMode makes the folder with exactly mode (past the umask).
func mkdirMode(mode os.FileMode) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
	}
}
