package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/lab"
)

// session is one run of `butter`: its streams and global flags.
type session struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	inventory      string // --inventory
	interactive    bool   // a person at a terminal can answer questions
	yes            bool   // install prerequisites without asking
	debug          bool   // --debug: the log on stderr too
	log            *slog.Logger
	closeLog       func() // nil: no log was opened
}

// open opens the cloud in the inventory.
func (s *session) open() (*cloud.Cloud, error) {
	path, err := s.inventoryPath()
	if err != nil {
		return nil, err
	}
	cl := cloud.New(path, s.connectorFor(path), s.log)
	cl.SayConnects(s.steps)
	return cl, nil
}

// withCloud opens the cloud for one verb and closes it after.
func (s *session) withCloud(fn func(*cloud.Cloud) error) error {
	cl, err := s.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(cl)
}

// inventoryPath is the inventory to use: --inventory, $BUTTER_INVENTORY,
// the default file, or, while none of those exists, the lab's.
func (s *session) inventoryPath() (string, error) {
	if s.inventory != "" {
		return s.inventory, nil
	}
	path, err := inventory.Path()
	if err != nil {
		return "", err
	}
	if os.Getenv("BUTTER_INVENTORY") == "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if lc, ok := lab.FindCloud(""); ok {
				return lc.Inventory, nil
			}
		}
	}
	return path, nil
}

// connectorFor is how to reach the machines of the inventory at path: a
// lab's own key and known_hosts for a lab's inventory, SSH as the user has
// it otherwise.
func (s *session) connectorFor(path string) cloud.Connector {
	var conn cloud.Connector
	if lc, ok := labOf(path); ok {
		self, _ := os.Executable()
		conn = lc.Connector(self)
	} else {
		conn = s.sshConnector()
	}
	if ssh, ok := conn.(cloud.SSH); ok {
		ssh.Transcript = protocolLog(s.stderr)
		ssh.Log = s.log
		ssh.Holder = s.holderFor(path)
		conn = ssh
	}
	return conn
}

// ProtocolLogEnv names a file the protocol transcript is appended to: every
// JSON-RPC message with every machine, a line each (see
// remote.DialOptions.Transcript). For debugging; it holds what the
// machines report, which is no secret.
const ProtocolLogEnv = "BUTTER_PROTOCOL_LOG"

var (
	protocolLogOnce sync.Once
	protocolLogFile *os.File
)

// protocolLog opens $BUTTER_PROTOCOL_LOG once for the process (nil when
// unset, or, after saying why on stderr, when it cannot be opened).
func protocolLog(stderr io.Writer) io.Writer {
	protocolLogOnce.Do(func() {
		path := os.Getenv(ProtocolLogEnv)
		if path == "" {
			return
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "butter: %s: %v; no protocol transcript\n", ProtocolLogEnv, err)
			return
		}
		protocolLogFile = f
	})
	if protocolLogFile == nil {
		return nil
	}
	return protocolLogFile
}

// sshConnector reaches the user's machines: their ~/.ssh/config and agent,
// butter's known_hosts, and missing packages installed with consent.
func (s *session) sshConnector() cloud.Connector {
	return cloud.SSH{Log: s.log, InstallPrerequisites: func(ctx context.Context, machine, missing, command string) (bool, error) {
		if s.yes {
			return true, nil
		}
		return s.ask(fmt.Sprintf("%s lacks %s. Run `%s` there?", machine, missing, command))
	}}
}

// labOf finds the lab whose inventory is at path.
func labOf(path string) (lab.CloudLab, bool) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "lab.json"))
	if err != nil {
		return lab.CloudLab{}, false
	}
	var lc lab.CloudLab
	if json.Unmarshal(b, &lc) != nil || lc.Inventory != path {
		return lab.CloudLab{}, false
	}
	return lab.FindCloud(lc.Name)
}

func (s *session) printJSON(v any) error {
	enc := json.NewEncoder(s.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (s *session) table(header string, rows [][]string) error {
	w := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		// Cells hold machines' answers (VM names, states, facts).
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = printable.String(strings.ReplaceAll(c, "\t", " "))
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	return w.Flush()
}

// steps prints a long operation's steps to stderr.
func (s *session) steps(st cloud.Step) {
	s.log.Info("step", "machine", st.Machine, "text", st.Text)
	// A step's text can quote a machine.
	if st.Machine != "" {
		fmt.Fprintf(s.stderr, "%s: %s\n", st.Machine, printable.String(st.Text))
	} else {
		fmt.Fprintln(s.stderr, printable.String(st.Text))
	}
}

// ask asks a yes/no question on the terminal; without one the answer is
// no, and the caller's error says which flag to give instead.
func (s *session) ask(question string) (bool, error) {
	if !s.interactive {
		return false, nil
	}
	fmt.Fprintf(s.stderr, "%s [y/N] ", question)
	line, err := bufio.NewReader(s.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes", nil
}
