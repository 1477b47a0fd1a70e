package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Version is butter's semantic version.
const Version = "0.2.0-dev"

// Options are what main gives the command line beside its streams.
type Options struct {
	// Commands are more verbs for the root, such as main's `helper`.
	Commands []*cobra.Command
}

// Run runs `butter ARGS...` and returns the exit code: 0, 1 when the work
// failed, 2 for a usage error. An error goes to stderr once, as
// "butter: ...", and a usage error's with a hint to the verb's help.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, o Options) int {
	s := &session{stdin: stdin, stdout: stdout, stderr: stderr, log: slog.New(slog.DiscardHandler)}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		s.interactive = true
	}
	root := s.root()
	root.AddCommand(o.Commands...)
	strictHelpAndCompletion(root)
	walk(root, func(c *cobra.Command) {
		markFailures(c)
		c.Flags().SortFlags = false // help lists flags as defined: required first
		c.SuggestionsMinimumDistance = 2
		s.completeNames(c)
	})
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if cmd == nil {
		cmd = root
	}
	code := report(stderr, cmd, err)
	if s.closeLog != nil {
		logged(ctx, s.log, args, code, err)
		s.closeLog()
	}
	return code
}

// startLog opens the log for cmd, unless cmd is the machine side or a
// shell's completion (which must print nothing else).
func (s *session) startLog(cmd *cobra.Command) {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Name() == "helper" || c.Name() == "completion" || strings.HasPrefix(c.Name(), "__complete") {
			return
		}
	}
	// The dashboard owns the terminal: --debug goes to the file only.
	s.log, s.closeLog = openLog(s.debug && cmd.HasParent(), s.stderr)
}

// root is `butter`: with no verb, the dashboard.
func (s *session) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "butter",
		Short: "One private cloud from ordinary Linux machines",
		Long: `butter turns ordinary Linux machines into one private cloud: private networks
and virtual machines across them. With no verb, it opens the dashboard.

The inventory is --inventory, else $BUTTER_INVENTORY, else
~/.config/butter/inventory.yaml (while none of those exists, a lab's).

Every SSH dial, remote command and helper call is logged, with its duration
and outcome, in ` + logPathHelp + `.`,
		Args:    verbs,
		Version: Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !s.interactive {
				// Exit 2: without a terminal, a command line needs a verb.
				return usageErrorf("the dashboard needs a terminal, and standard input is not one; give a verb: %s", verbList(cmd))
			}
			return s.dashboard(cmd.Context())
		},
		PersistentPreRun: func(cmd *cobra.Command, _ []string) { s.startLog(cmd) },
		// Run prints errors and usage, once.
		SilenceErrors: true,
		SilenceUsage:  true,
		// Flags before a verb belong to its parents, so that `helper` gets
		// exactly the arguments after its name.
		TraverseChildren: true,
	}
	root.PersistentFlags().BoolVar(&s.debug, "debug", false, "also print the log on stderr: every remote command, its duration and exit")
	root.SetVersionTemplate(versionText(helperapi.ServeProtocol))
	root.SetUsageFunc(usage)
	root.PersistentFlags().StringVar(&s.inventory, "inventory", "", "the inventory `FILE` (default: $BUTTER_INVENTORY, else ~/.config/butter/inventory.yaml)")
	root.AddCommand(s.machineCommand(), s.networkCommand(), s.vmCommand(), s.syncCommand(), s.adoptCommand(), s.doctorCommand(), s.labCommand(), s.holderCommand())
	return root
}

// strictHelpAndCompletion makes cobra's help and completion verbs refuse
// what they do not know (exit 2), as every other verb does, instead of
// printing help and exiting 0.
func strictHelpAndCompletion(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Run = nil
			c.RunE = func(c *cobra.Command, args []string) error {
				cmd, rest, err := c.Root().Find(args)
				if err != nil || len(rest) > 0 {
					return usageErrorf("no help topic %q: give a noun and verb, such as: butter help vm create", strings.Join(args, " "))
				}
				cmd.InitDefaultHelpFlag() // so that help lists -h, as --help does
				cmd.InitDefaultVersionFlag()
				return cmd.Help()
			}
		case "completion":
			c.Args = verbs
			c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
	}
}

// verbList is root's verbs for people: "machine, network, ... or lab".
func verbList(root *cobra.Command) string {
	var names []string
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && c.Name() != "helper" && c.Name() != "completion" {
			names = append(names, c.Name())
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// walk calls fn on c and every command under it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, sub := range c.Commands() {
		walk(sub, fn)
	}
}

// versionText is what --version prints: the version, the commit and its
// date when the build recorded them, and the helper protocol.
func versionText(helperProtocol int) string {
	commit, date, modified := "unknown", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				commit = kv.Value
			case "vcs.time":
				date = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					modified = " (modified)"
				}
			}
		}
	}
	return fmt.Sprintf("butter %s\ncommit:          %s%s\ndate:            %s\nhelper protocol: %d\n",
		Version, commit, modified, date, helperProtocol)
}
