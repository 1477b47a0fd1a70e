package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMain lets this test binary stand in for butter in a shell: with
// BUTTER_CLI_TEST_RUN set it runs the command line and exits.
//
// No verb here starts a connection holder: the holder is started as `<this
// executable> holder …`, which for a test binary would run the tests again
// (and their verbs would start more).
func TestMain(m *testing.M) {
	os.Setenv(HolderEnv, "off")
	if os.Getenv("BUTTER_CLI_TEST_RUN") != "" {
		os.Exit(Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, Options{}))
	}
	os.Exit(m.Run())
}

// completions asks the command line what completes its last argument.
func completions(t *testing.T, args ...string) []string {
	t.Helper()
	code, out, errs := butter(t, Options{}, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d, stderr %q", args, code, errs)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, ":") { // the last line is the directive
			got = append(got, l)
		}
	}
	return got
}

func TestCompleteNames(t *testing.T) {
	emptyCloud(t) // $BUTTER_INVENTORY is empty: names come only from --inventory
	inv, err := filepath.Abs("testdata/complete.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--inventory", inv, "machine", "remove", ""}, []string{"alpha", "beta"}},
		{[]string{"machine", "remove", "--inventory", inv, "b"}, []string{"beta"}},
		{[]string{"machine", "rotate-key", "--inventory=" + inv, ""}, []string{"alpha", "beta"}},
		{[]string{"machine", "remove", "--inventory", inv, "alpha", ""}, nil}, // one name only
		{[]string{"network", "remove", "--inventory", inv, ""}, []string{"blue", "green"}},
		{[]string{"vm", "stop", "--inventory", inv, ""}, []string{"cache", "db", "web"}},
		{[]string{"vm", "console", "--inventory", inv, "w"}, []string{"web"}},
		{[]string{"sync", "--inventory", inv, "alpha", ""}, []string{"beta"}}, // many, each once
		{[]string{"vm", "create", "x", "--inventory", inv, "--machine", ""}, []string{"alpha", "beta"}},
		{[]string{"vm", "create", "x", "--inventory", inv, "--network", "g"}, []string{"green"}},
		{[]string{"network", "create", "x", "--inventory", inv, "--machines", "alpha,"}, []string{"alpha,beta"}},
		{[]string{"network", "create", "--inventory", inv, ""}, nil}, // a new name
		{[]string{"vm", "stop", ""}, nil},                            // the empty inventory: no names
		{[]string{"vm", "stop", "--inventory", "/nonexistent/x.yaml", ""}, nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if got := completions(t, tc.args...); !slices.Equal(got, tc.want) {
				t.Errorf("completed %q, want %q", got, tc.want)
			}
		})
	}
}

// The bash script loads, registers butter, and its completion function,
// run by bash against this test binary as butter, returns the inventory's
// names.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash here")
	}
	emptyCloud(t)
	inv, err := filepath.Abs("testdata/complete.yaml")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := `butter() { BUTTER_CLI_TEST_RUN=1 "$SELF" "$@"; }
source <(butter completion bash) || exit 1
complete -p butter || exit 1
words=(butter vm stop --inventory "$INV" ""); cword=5; cur=""
__butter_get_completion_results
printf 'names: %s\n' $out`
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
	cmd.Env = append(os.Environ(), "SELF="+self, "INV="+inv)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	for _, want := range []string{"complete -o default -F __start_butter butter", "names: cache\nnames: db\nnames: web\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("bash printed\n%s\nlacking %q", out, want)
		}
	}
}
