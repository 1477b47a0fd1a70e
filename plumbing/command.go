package plumbing

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
)

const helperUsage = `usage: butter helper VERB [flags]

The machine side of butter. The operator's butter drives it over SSH;
these verbs are for debugging on the machine itself.

  daemon  [--state-dir DIR] [--socket PATH]   run the helper daemon in the foreground
  pubkey  [--state-dir DIR]                   print this machine's WireGuard public key
  apply   [--socket PATH] FILE|-              apply a machine spec (JSON); print the report
  check   [--socket PATH] FILE|-              print how the machine differs from a spec
  remove  [--socket PATH]                     tear down every link the helper made
  facts   [--socket PATH]                     print kernel capabilities and mesh state
`

// RunCommand runs `butter helper ARGS...`.
func RunCommand(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, helperUsage)
		return nil
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("butter helper "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", DefaultStateDir, "the helper's state folder")
	socket := fs.String("socket", DefaultSocket, "the helper daemon's socket")
	verbose := fs.Bool("v", false, "log debug detail")
	if err := fs.Parse(args); err != nil {
		return err
	}
	printJSON := func(v any) error {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	readSpec := func() (Spec, error) {
		if fs.NArg() != 1 {
			return Spec{}, fmt.Errorf("butter helper %s: give one spec file, or - for standard input", verb)
		}
		var data []byte
		var err error
		if name := fs.Arg(0); name == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(name)
		}
		if err != nil {
			return Spec{}, fmt.Errorf("read spec: %w", err)
		}
		return ParseSpec(data)
	}
	dial := func() (*Client, error) { return Dial(ctx, *socket) }

	switch verb {
	case "daemon":
		level := slog.LevelInfo
		if *verbose {
			level = slog.LevelDebug
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
		return RunDaemon(ctx, DaemonOptions{StateDir: *stateDir, Socket: *socket, Log: log})
	case "pubkey":
		k, err := state{*stateDir}.privateKey()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, k.PublicKey().String())
		return err
	case "apply", "check":
		spec, err := readSpec()
		if err != nil {
			return err
		}
		c, err := dial()
		if err != nil {
			return err
		}
		defer c.Close()
		if verb == "apply" {
			rep, err := c.Apply(ctx, spec)
			if err != nil {
				return err
			}
			return printJSON(rep)
		}
		d, err := c.Check(ctx, spec)
		if err != nil {
			return err
		}
		return printJSON(CheckResult{Drift: d})
	case "remove", "facts":
		c, err := dial()
		if err != nil {
			return err
		}
		defer c.Close()
		if verb == "remove" {
			return c.Remove(ctx)
		}
		f, err := c.Facts(ctx)
		if err != nil {
			return err
		}
		return printJSON(f)
	}
	return errors.New("butter helper: unknown verb " + fmt.Sprintf("%q", verb) + "; see butter helper --help")
}
