package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/butter-cloud/butter/cloud"
)

// cli is one run of a `butter` verb: its streams and the global flags.
type cli struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	inventory      string
	interactive    bool // a person at a terminal can answer questions
	yes            bool // install prerequisites without asking
}

// open opens the cloud in the inventory.
func (c *cli) open() (*cloud.Cloud, error) {
	path, err := c.inventoryPath()
	if err != nil {
		return nil, err
	}
	return cloud.New(path, c.connectorFor(path), nil), nil
}

// withCloud opens the cloud for one verb and closes it after.
func (c *cli) withCloud(fn func(*cloud.Cloud) error) error {
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(cl)
}

// oneName parses a verb that takes one name and no flags, e.g.
// `network remove NAME`.
func (c *cli) oneName(verb string, args []string) (string, error) {
	noun, _, _ := strings.Cut(verb, " ")
	fs := c.flags(verb, "butter "+verb+" NAME")
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("butter %s: give the %s's name", verb, noun)
	}
	return pos[0], nil
}

// sshConnector reaches the user's machines: their ~/.ssh/config and agent,
// butter's known_hosts, and missing packages installed with consent.
func (c *cli) sshConnector() cloud.Connector {
	return cloud.SSH{InstallPrerequisites: func(ctx context.Context, machine, missing, command string) (bool, error) {
		if c.yes {
			return true, nil
		}
		return c.ask(fmt.Sprintf("%s lacks %s. Run `%s` there?", machine, missing, command))
	}}
}

// flags is a flag set for one verb, which prints its usage to stderr.
func (c *cli) flags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, taking positional arguments wherever they stand
// (`vm create web --machine a` and `vm create --machine a web` alike).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) table(header string, rows [][]string) error {
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

// steps prints a long operation's steps to stderr.
func (c *cli) steps(s cloud.Step) {
	if s.Machine != "" {
		fmt.Fprintf(c.stderr, "%s: %s\n", s.Machine, s.Text)
	} else {
		fmt.Fprintln(c.stderr, s.Text)
	}
}

// ask asks a yes/no question on the terminal; without one the answer is
// no, and the caller's error says which flag to give instead.
func (c *cli) ask(question string) (bool, error) {
	if !c.interactive {
		return false, nil
	}
	fmt.Fprintf(c.stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}

// parseSize reads sizes such as 512M, 2G, 1.5GiB or 1024 (in unit) and
// returns MiB.
func parseSize(s, unit string) (int, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, suffix := t, unit
	if i >= 0 {
		num, suffix = t[:i], strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(t[i:], "iB"), "B"))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, such as 512M or 2G", s)
	}
	switch strings.ToUpper(suffix) {
	case "M":
		return int(v), nil
	case "G":
		return int(v * 1024), nil
	case "T":
		return int(v * 1024 * 1024), nil
	}
	return 0, fmt.Errorf("size %q: unit %q: use M, G or T", s, suffix)
}

func ago(seconds float64) string {
	if seconds < 0 {
		return "never"
	}
	return (time.Duration(seconds) * time.Second).String() + " ago"
}
