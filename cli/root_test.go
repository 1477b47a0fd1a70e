package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/spf13/cobra"
)

// butter runs the command line with no terminal and returns the exit code
// and what it printed.
func butter(t *testing.T, o Options, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = Run(context.Background(), args, strings.NewReader(""), &out, &errb, o)
	return code, out.String(), errb.String()
}

// emptyCloud points butter at an empty inventory in a temporary home.
func emptyCloud(t *testing.T) (inventory string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, ".config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, ".local", "state"))
	inventory = filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(inventory, []byte("version: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BUTTER_INVENTORY", inventory)
	return inventory
}

// helperStub stands in for main's `helper` and records its arguments.
func helperStub(got *[]string) *cobra.Command {
	return &cobra.Command{
		Use:                "helper VERB ...",
		Short:              "The machine side",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			*got = args
			return nil
		},
	}
}

// TestHelp holds every noun's and verb's help to a golden file (go test
// ./cli -run TestHelp -update writes them, for a new verb too), and checks
// that --help, -h and `butter help ...` print it on stdout and exit 0.
func TestHelp(t *testing.T) {
	emptyCloud(t)
	var helperArgs []string
	o := Options{Commands: []*cobra.Command{helperStub(&helperArgs)}}
	var paths [][]string
	walk((&session{}).root(), func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
	})
	if len(paths) < 20 {
		t.Fatalf("only %d commands found: %q", len(paths), paths)
	}
	for _, path := range paths {
		name := "butter"
		if len(path) > 0 {
			name = strings.Join(path, "_")
		}
		t.Run(name, func(t *testing.T) {
			var first string
			for _, args := range [][]string{
				append(slices.Clone(path), "--help"),
				append(slices.Clone(path), "-h"),
				append([]string{"help"}, path...),
			} {
				code, out, errs := butter(t, o, args...)
				if code != 0 || errs != "" {
					t.Fatalf("butter %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
				}
				if first == "" {
					first = out
					golden.RequireEqual(t, out)
				} else if out != first {
					t.Errorf("butter %s printed other help than --help:\n%s", strings.Join(args, " "), out)
				}
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	inv := emptyCloud(t)
	hint := regexp.MustCompile(`^see 'butter( [a-z]+)* --help'$`)
	for _, tc := range []struct {
		args []string
		code int
		want string // in stdout for 0, in the one message for 1 and 2
	}{
		{[]string{"--help"}, 0, "Available Commands"},
		{[]string{"-h"}, 0, "Available Commands"},
		{[]string{"help"}, 0, "Available Commands"},
		{[]string{"help", "vm", "stop"}, 0, "butter vm stop NAME"},
		{[]string{"machine"}, 0, "butter machine [command]"},
		{[]string{"vm", "--help"}, 0, "console"},
		{[]string{"vm", "create", "-h"}, 0, "--machine string"},
		{[]string{"network", "create", "--help"}, 0, "--subnet string"},
		{[]string{"lab", "up", "--help"}, 0, "--underlay string"},
		{[]string{"bogus"}, 2, `unknown verb "bogus" for "butter"`},
		{[]string{"help", "bogus"}, 2, `no help topic "bogus"`},
		{[]string{"help", "vm", "frob"}, 2, `no help topic "vm frob"`},
		{[]string{"completion", "tcsh"}, 2, `unknown verb "tcsh" for "butter completion"`},
		{[]string{"completion", "bash", "--help"}, 0, "bash"},
		{[]string{"mahcine"}, 2, "did you mean machine?"},
		{[]string{"vm", "frob", "web"}, 2, `unknown verb "frob" for "butter vm"`},
		{[]string{"vm", "create", "web", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"vm", "create", "--machine"}, 2, "flag needs an argument: --machine"},
		{[]string{"vm", "stop"}, 2, "give the VM's name"},
		{[]string{"machine", "add", "m1", "192.0.2.1"}, 2, `unexpected argument "192.0.2.1" after the machine's name: give other values with their flags`},
		{[]string{"vm", "create", "web"}, 2, `required flag(s) "machine", "network", "image" not set`},
		{[]string{"vm", "create", "web", "--machine", "a", "--network", "n", "--image", "i", "--memory", "5Q"}, 2, `--memory: size "5Q"`},
		{[]string{"vm", "create", "--machine=a", "--network", "n", "--image=i", "--disk", "x", "web"}, 2, `--disk: size "x"`},
		{[]string{"vm", "stop", "--timeout", "soon", "web"}, 2, `invalid argument "soon" for "--timeout"`},
		{[]string{"network", "create", "blue", "--subnet", "10.1"}, 2, `--subnet "10.1"`},
		{[]string{"network", "list", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"machine", "list", "--timeout", "0s"}, 2, "--timeout 0s: give how long to wait for each machine"},
		{[]string{"vm", "list", "--timeout", "-5s"}, 2, "--timeout -5s: give how long"},
		{[]string{"network", "list", "--timeout", "soon"}, 2, `invalid argument "soon" for "--timeout"`},
		{[]string{"machine", "add", "m1", "--address", "h", "--accept-new-host-key", "--host-key", "SHA256:x"}, 2, "not both"},
		{[]string{"--inventory"}, 2, "flag needs an argument: --inventory"},
		{[]string{"vm", "stop", "web"}, 1, `no vm "web"`},
		{[]string{"vm", "ssh"}, 2, "give the VM's name"},
		{[]string{"vm", "ssh", "web", "uname"}, 2, `unexpected argument "uname": put the command to run after --`},
		{[]string{"vm", "ssh", "web", "--", "uname"}, 1, `no vm "web"`},
		{[]string{"vm", "proxy", "web"}, 1, `no vm "web"`},
		{[]string{"vm", "ssh-config", "web"}, 1, `no vm "web"`},
		{[]string{"--inventory", inv, "network", "remove", "blue"}, 1, `blue`},
		{[]string{}, 2, "the dashboard needs a terminal"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := butter(t, Options{}, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tc.code, out, errs)
			}
			lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
			switch {
			case code == 0:
				if errs != "" || !strings.Contains(out, tc.want) {
					t.Fatalf("stdout %q lacks %q, or stderr %q is not empty", out, tc.want, errs)
				}
			case !strings.HasPrefix(errs, "butter: ") || strings.HasPrefix(errs, "butter: butter") || !strings.Contains(lines[0], tc.want):
				t.Fatalf("stderr %q: want one message, butter: ...%s...", errs, tc.want)
			case out != "":
				t.Fatalf("stdout %q, want nothing", out)
			case code == 2 && (len(lines) != 2 || !hint.MatchString(lines[1])):
				t.Fatalf("stderr %q: want one message and a hint", errs)
			case code == 1 && len(tc.args) > 0 && len(lines) != 1:
				t.Fatalf("stderr %q: want one line", errs)
			}
		})
	}
}

// Without a terminal, butter alone is a usage error (exit 2) that names the
// verbs to use instead.
func TestNoTerminalListsVerbs(t *testing.T) {
	emptyCloud(t)
	code, _, errs := butter(t, Options{})
	want := "butter: the dashboard needs a terminal, and standard input is not one; " +
		"give a verb: adopt, doctor, lab, machine, network, sync or vm\nsee 'butter --help'\n"
	if code != 2 || errs != want {
		t.Errorf("exit %d, stderr %q; want 2, %q", code, errs, want)
	}
}

func TestHintNamesTheVerb(t *testing.T) {
	emptyCloud(t)
	_, _, errs := butter(t, Options{}, "vm", "create", "web", "--bogus")
	if want := "butter: unknown flag: --bogus\nsee 'butter vm create --help'\n"; errs != want {
		t.Errorf("stderr %q, want %q", errs, want)
	}
}

// --inventory counts wherever it stands: before the noun, between noun and
// verb, after the verb and after its argument.
func TestInventoryAnywhere(t *testing.T) {
	emptyCloud(t) // $BUTTER_INVENTORY: fine, and without the VM
	bad := filepath.Join(t.TempDir(), "other.yaml")
	if err := os.WriteFile(bad, []byte("machines: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--inventory", bad, "vm", "stop", "web"},
		{"vm", "--inventory", bad, "stop", "web"},
		{"vm", "stop", "--inventory=" + bad, "web"},
		{"vm", "stop", "web", "--inventory", bad},
	} {
		code, _, errs := butter(t, Options{}, args...)
		if code != 1 || !strings.Contains(errs, bad) {
			t.Errorf("butter %s: exit %d, stderr %q; want the error of %s", strings.Join(args, " "), code, errs, bad)
		}
	}
}

func TestVersion(t *testing.T) {
	emptyCloud(t)
	code, out, errs := butter(t, Options{}, "--version")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"butter " + Version, fmt.Sprintf("helper protocol: %d", helperapi.ServeProtocol), "commit: ", "date: "} {
		if !strings.Contains(out, want) {
			t.Errorf("--version printed %q, lacking %q", out, want)
		}
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9a-z.]+)?$`).MatchString(Version) {
		t.Errorf("Version %q is not a semantic version", Version)
	}
}

// A verb with flag parsing off, such as main's helper, gets exactly the
// arguments after its name; global flags before it are butter's.
func TestPassThrough(t *testing.T) {
	emptyCloud(t)
	for _, tc := range []struct{ args, want []string }{
		{[]string{"helper", "vm", "list", "--socket", "/s", "-v"}, []string{"vm", "list", "--socket", "/s", "-v"}},
		{[]string{"helper", "--help"}, []string{"--help"}},
		{[]string{"helper", "-h"}, []string{"-h"}},
		{[]string{"helper", "--inventory", "x", "facts"}, []string{"--inventory", "x", "facts"}},
		{[]string{"--inventory", "x", "helper", "facts"}, []string{"facts"}},
		{[]string{"helper"}, []string{}},
	} {
		var got []string
		code, _, errs := butter(t, Options{Commands: []*cobra.Command{helperStub(&got)}}, tc.args...)
		if code != 0 || !slices.Equal(got, tc.want) {
			t.Errorf("butter %q: exit %d (%s), helper got %q, want %q", tc.args, code, errs, got, tc.want)
		}
	}
}

// sync --wait with a pending machine still away fails saying it is still
// behind (no change was recorded); without --wait it exits 0.
func TestSyncWaitSaysStillBehind(t *testing.T) {
	inv := emptyCloud(t)
	// m1 confirmed generation 1 of 2; nothing listens on port 1 here.
	key := "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	if err := os.WriteFile(inv, []byte("version: 1\ngeneration: 2\nmachines:\n  - name: m1\n    address: 127.0.0.1\n    port: 1\n"+
		"    mesh_ip: 10.99.0.1\n    public_key: "+key+"\n    confirmed: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := butter(t, Options{}, "sync")
	if code != 0 || !strings.Contains(errs, "machine m1 is away") {
		t.Errorf("sync with m1 away: exit %d, stderr %q; want 0 naming m1 away", code, errs)
	}
	code, _, errs = butter(t, Options{}, "sync", "--wait")
	if code != 1 || !strings.Contains(errs, "butter: m1 is still behind (--wait)") || strings.Contains(errs, "recorded") {
		t.Errorf("sync --wait with m1 away: exit %d, stderr %q; want 1 saying m1 is still behind, no change recorded", code, errs)
	}
}

// machine add --dry-run on an empty cloud says what adding would do,
// contacting nothing (192.0.2.0/24 is reserved for documentation: a dial
// there would hang or fail) and writing nothing.
func TestMachineAddDryRun(t *testing.T) {
	inv := emptyCloud(t)
	before, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := butter(t, Options{}, "machine", "add", "m1", "--address", "192.0.2.1", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"# dry run of machine add m1: nothing changed, nothing contacted",
		"connect to 192.0.2.1 port 22",
		"as /var/lib/butter/bin/butter-<version>",
		"give it mesh address 10.99.0.1 and apply generation 1",
		"on no other machine yet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dry run does not say %q:\n%s", want, out)
		}
	}
	if after, _ := os.ReadFile(inv); string(after) != string(before) {
		t.Errorf("the dry run changed the inventory:\n%s", after)
	}
}
