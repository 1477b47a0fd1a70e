package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// A verb that dials a machine leaves the dial, its outcome and the run in
// the log file (0600, under $XDG_STATE_HOME), and with --debug on stderr;
// completion and the machine side log nothing.
func TestLogFile(t *testing.T) {
	inv := emptyCloud(t)
	key := "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	data := fmt.Sprintf("version: 1\nmachines:\n  - name: m1\n    address: 127.0.0.1\n    port: %d\n    mesh_ip: 10.99.0.1\n    public_key: %s\n", closedPort(t), key)
	if err := os.WriteFile(inv, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	path, err := LogPath()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(os.Getenv("XDG_STATE_HOME"), "butter", "butter.log"); path != want {
		t.Fatalf("log at %s, want %s", path, want)
	}

	var helperArgs []string
	o := Options{Commands: []*cobra.Command{helperStub(&helperArgs)}}
	for _, args := range [][]string{{"helper", "facts"}, {"__complete", "vm", "stop", ""}, {"completion", "bash"}, {"--help"}} {
		butter(t, o, args...)
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("butter %s made the log (%v)", strings.Join(args, " "), err)
		}
	}

	code, _, errs := butter(t, o, "machine", "list")
	if code != 1 || strings.Contains(errs, "ssh dial") {
		t.Fatalf("machine list: exit %d, stderr %q; want 1 and no log lines without --debug", code, errs)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{`msg="ssh dial failed" host=127.0.0.1`, "connection refused", `msg="butter ran" args="machine list" exit=1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log lacks %q:\n%s", want, b)
		}
	}
	_, _, errs = butter(t, o, "machine", "list", "--debug")
	if !strings.Contains(errs, `msg="ssh dial failed"`) {
		t.Errorf("--debug: stderr %q lacks the dial", errs)
	}
}

// The log moves aside when it would outgrow its bound, keeping one old
// copy, and is made 0600 whatever it was.
func TestLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "butter", "butter.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Repeat("o", 90)), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := openRotating(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 5 {
		fmt.Fprintf(r, "line %d %s\n", i, strings.Repeat("x", 30))
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if len(cur) > 100 || len(old) > 100 || !strings.Contains(string(cur), "line 4") || strings.Contains(string(old)+string(cur), "oooo") {
		t.Errorf("after rotation: %q and %q.1", cur, old)
	}
	for _, p := range []string{path, path + ".1"} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want 0600", p, st.Mode(), err)
		}
	}
}
