package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// awkward are the strings every remote command line must survive.
var awkward = []struct{ name, s string }{
	{"empty", ""},
	{"plain", "disk.img"},
	{"space", "two words"},
	{"single quote", "it's"},
	{"only quotes", `''"'"`},
	{"double quotes", `say "hi"`},
	{"newline", "line one\nline two\n"},
	{"dollar", "$HOME ${PATH} $((1+1))"},
	{"backticks", "`id -u`"},
	{"command substitution", "$(touch /tmp/butter-pwned)"},
	{"backslashes", `a\b\\c\'d\`},
	{"glob and operators", "* ? [a] ; | & > < ( ) { } ! #"},
	{"dash", "-n"},
	{"tab and cr", "a\tb\rc"},
	{"non-ASCII", "héllo wörld ☃ 日本"},
}

// TestShellQuote: each string comes back out of sh exactly as it went in,
// as one word.
func TestShellQuote(t *testing.T) {
	for _, tt := range awkward {
		t.Run(tt.name, func(t *testing.T) {
			q := shellQuote(tt.s)
			out, err := exec.Command("sh", "-c", `printf '%s|' `+q+` end`).Output()
			if err != nil {
				t.Fatalf("sh -c printf %s: %v", q, err)
			}
			if want := tt.s + "|end|"; string(out) != want {
				t.Fatalf("shellQuote(%q) = %s; sh read it as %q, want %q", tt.s, q, out, want)
			}
		})
	}
	// Words made of safe characters stay readable.
	for in, want := range map[string]string{"disk.img": "disk.img", "/var/lib/butter": "/var/lib/butter", "": "''", "it's": `'it'\''s'`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// fishish is a login shell that is not POSIX: it reads the command text
// with fish's rules for the little it understands (plain words, and
// single quotes in which only \\ and \' are escapes) and refuses
// everything else ($, ", `, ;, |, newlines…) as fish or tcsh would read it
// differently or not at all. It runs the words as a program, without sh.
func fishish(cmd string, ch ssh.Channel, gone <-chan struct{}) int {
	argv, err := fishWords(cmd)
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "fishish: %v\n", err)
		return 127
	}
	if argv[0] == "sudo" {
		// This machine has no sudo: stand in for `sudo -n PROGRAM ARGS`,
		// already root.
		if len(argv) < 3 || argv[1] != "-n" {
			fmt.Fprintf(ch.Stderr(), "fishish: sudo without -n: %q\n", argv)
			return 1
		}
		argv = argv[2:]
	}
	return runOn(exec.Command(argv[0], argv[1:]...), ch, gone)
}

func fishWords(cmd string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(cmd); i++ {
		switch c := cmd[i]; {
		case c == ' ':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		case c == '\'':
			inWord = true
			for i++; ; i++ {
				if i >= len(cmd) {
					return nil, errors.New("unterminated quote")
				}
				if cmd[i] == '\'' {
					break
				}
				if cmd[i] == '\\' && i+1 < len(cmd) && (cmd[i+1] == '\\' || cmd[i+1] == '\'') {
					i++
				}
				if cmd[i] == '\n' || cmd[i] == '!' {
					return nil, fmt.Errorf("%q inside quotes: csh would not take it", cmd[i])
				}
				w.WriteByte(cmd[i])
			}
		case strings.IndexByte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+%", c) >= 0:
			inWord = true
			w.WriteByte(c)
		default:
			return nil, fmt.Errorf("unsupported syntax %q at %d in %q", c, i, cmd)
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}

// TestLoginShellNotPOSIX: the machine's login shell is fish-like, yet
// every command, root or not, runs under sh with its text intact; the
// control shows that shell refuses the POSIX line sent as it is.
func TestLoginShellNotPOSIX(t *testing.T) {
	f := newFixture(t)
	f.srv.handler = fishish
	f.srv.users["alice"] = f.srv.users["root"]
	c := f.client(t)
	o := f.opts
	o.User = "alice"
	alice, err := f.dial(t, o) // root commands go through sudo -n
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tt := range awkward {
		t.Run(tt.name, func(t *testing.T) {
			line := "printf '%s|' " + shellQuote(tt.s) + " end; echo ok >&2"
			for _, run := range []struct {
				c    *Client
				root bool
			}{{c, false}, {c, true}, {alice, false}, {alice, true}} {
				var out, errOut bytes.Buffer
				if err := run.c.Run(ctx, Cmd{Line: line, Root: run.root, Stdout: &out, Stderr: &errOut}); err != nil {
					t.Fatalf("%s, root=%v: %v", run.c.User, run.root, err)
				}
				if want := tt.s + "|end|"; out.String() != want || errOut.String() != "ok\n" {
					t.Fatalf("%s, root=%v: got %q, %q; want %q, %q", run.c.User, run.root, out.String(), errOut.String(), want, "ok\n")
				}
			}
		})
	}
	f.srv.mu.Lock()
	sudoed := slices.ContainsFunc(f.srv.execs, func(c string) bool { return strings.HasPrefix(c, "sudo -n printf") })
	f.srv.mu.Unlock()
	if !sudoed {
		t.Fatal("alice's root commands did not go through sudo -n")
	}
	// Standard input and exit status pass through sh too.
	var out bytes.Buffer
	err = alice.Run(ctx, Cmd{Line: "cat; exit 7", Root: true, Stdin: strings.NewReader("in\n"), Stdout: &out})
	var re *RunError
	if !errors.As(err, &re) || re.Status != 7 || out.String() != "in\n" {
		t.Fatalf("stdin and status: %q, %v", out.String(), err)
	}
	// Control: the same shell refuses a POSIX line sent without the
	// wrapping (what butter sent a root login before).
	s, err := c.conn.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	raw, err := s.CombinedOutput(`printf '%s' "$HOME"; echo ok`)
	if err == nil || !strings.Contains(string(raw), "unsupported syntax") {
		t.Fatalf("the fish-like shell ran a raw POSIX line: %q, %v", raw, err)
	}
}
