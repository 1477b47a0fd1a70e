package remote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

// TestConnectAny: one session starts the helper built for the machine's
// platform among several, found by the session's own shell, and the
// Machine names the one that answered; a platform none is built for, or
// its helper missing, fails clearly. The "machine" is this host, whose
// shell runs the stand-in helpers (scripts that say the hello).
func TestConnectAny(t *testing.T) {
	dir := t.TempDir()
	helper := func(arch, version string, present bool) Helper {
		h := Helper{Path: filepath.Join(dir, "butter-"+version), Version: version, Platform: Platform{OS: "linux", Arch: arch}}
		if present {
			script := fmt.Sprintf("#!/bin/sh\n[ \"$*\" = 'helper serve' ] || exit 2\necho '%s %d %s'\nexec cat\n", helperapi.ServeMagic, helperapi.ServeProtocol, version)
			if err := os.WriteFile(h.Path, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}
	here, other := "amd64", "arm64"
	if unameMachine() == "aarch64" {
		here, other = other, here
	}
	mine, theirs := helper(here, "1111111111111111", true), helper(other, "2222222222222222", true)
	gone := helper(here, "3333333333333333", false)
	tests := []struct {
		name    string
		hs      []Helper
		want    Helper
		wantErr string
		is      error
	}{
		{name: "this platform's first", hs: []Helper{mine, theirs}, want: mine},
		{name: "this platform's second", hs: []Helper{theirs, mine}, want: mine},
		{name: "none for this platform", hs: []Helper{theirs}, wantErr: "no butter helper here for Linux " + unameMachine()},
		{name: "this platform's is missing", hs: []Helper{gone, theirs}, wantErr: "missing", is: ErrHelperMismatch},
		{name: "no helper at all", wantErr: "no helper binary", is: ErrNoHelper},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			m, err := ConnectAny(ctx, f.client(t), tt.hs)
			if tt.wantErr != "" {
				if err == nil {
					m.Close()
					t.Fatalf("connected to %+v, want an error with %q", m.Helper(), tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || (tt.is != nil && !errors.Is(err, tt.is)) {
					t.Fatalf("got %v, want an error with %q (is %v)", err, tt.wantErr, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got := m.Helper(); got != tt.want {
				t.Errorf("the helper that answered: %+v, want %+v", got, tt.want)
			}
			if n := len(f.srv.execs); n != 1 {
				t.Errorf("%d sessions ran commands, want 1: %q", n, f.srv.execs)
			}
		})
	}
}
