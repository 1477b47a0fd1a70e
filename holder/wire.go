package holder

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/butter-cloud/butter/remote"
)

// Ops a Request asks for.
const (
	OpServe = "serve" // the helper's protocol
	OpExec  = "exec"  // a command's streams
	OpPing  = "ping"  // is a holder there (the answer only)
)

// Kinds of failure an Answer reports.
const (
	// KindUnreachable: the machine did not answer (it is away).
	KindUnreachable = "unreachable"
	// KindFailed: anything else (a host key, login, a helper that does
	// not match); the verb dials itself and learns the details.
	KindFailed = "failed"
)

// Request is what a verb asks of the holder.
type Request struct {
	Op string `json:"op"`
	// Machine is the inventory's name of the machine, Host its address;
	// Dial and Helpers how to reach it and which helper it runs.
	Machine string               `json:"machine"`
	Host    string               `json:"host"`
	Dial    Dial                 `json:"dial"`
	Helpers remote.HelperOptions `json:"helpers"`
	// Line and Root are the command of an exec (remote.Cmd).
	Line string `json:"line,omitempty"`
	Root bool   `json:"root,omitempty"`
}

// Dial is the data of remote.DialOptions a held connection is made with.
type Dial struct {
	User           string        `json:"user,omitempty"`
	Port           int           `json:"port,omitempty"`
	IdentityFiles  []string      `json:"identity_files,omitempty"`
	SSHConfig      string        `json:"ssh_config,omitempty"`
	AgentSocket    string        `json:"agent_socket,omitempty"`
	KnownHosts     string        `json:"known_hosts,omitempty"`
	UserKnownHosts []string      `json:"user_known_hosts,omitempty"`
	ConnectTimeout time.Duration `json:"connect_timeout,omitempty"`
}

// Options are the remote.DialOptions for d (nothing is trusted anew).
func (d Dial) Options() remote.DialOptions {
	return remote.DialOptions{User: d.User, Port: d.Port, IdentityFiles: d.IdentityFiles, SSHConfig: d.SSHConfig,
		AgentSocket: d.AgentSocket, KnownHosts: d.KnownHosts, UserKnownHosts: d.UserKnownHosts,
		ConnectTimeout: d.ConnectTimeout}
}

// Answer is the holder's reply to a Request.
type Answer struct {
	// Error and Kind say why not (empty: the stream follows).
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// Reused says the SSH connection was held already (no new dial);
	// Spare that the serve stream was opened ahead.
	Reused bool `json:"reused,omitempty"`
	Spare  bool `json:"spare,omitempty"`
	// Addr, Port and Jumped are the route; User the login user; Version
	// and Path the helper the stream speaks to.
	Addr    string `json:"addr,omitempty"`
	Jumped  bool   `json:"jumped,omitempty"`
	User    string `json:"user,omitempty"`
	Version string `json:"version,omitempty"`
	Path    string `json:"path,omitempty"`
	// For an unreachable machine: Timeout is the connect timeout, Cause
	// what the connect said, TimedOut whether it ran out of time
	// (remote.UnreachableError).
	Timeout  time.Duration `json:"timeout,omitempty"`
	Cause    string        `json:"cause,omitempty"`
	TimedOut bool          `json:"timed_out,omitempty"`
}

// ExitFrame ends an exec: the command's error, empty if it succeeded.
type ExitFrame struct {
	Error string `json:"error,omitempty"`
}

// Frame types.
const (
	frameStdin    = 'i'
	frameStdinEnd = 'c'
	frameStdout   = 'o'
	frameStderr   = 'e'
	frameExit     = 'x'
)

// maxFrame bounds a frame's data.
const maxFrame = 1 << 20

// maxLine bounds a Request or Answer line.
const maxLine = 64 << 10

func writeFrame(w io.Writer, typ byte, data []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
	if _, err := w.Write(append(hdr[:], data...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("holder frame of %d bytes, more than %d", n, maxFrame)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, err
	}
	return hdr[0], data, nil
}

// frameWriter writes what it is given as frames of one type.
type frameWriter struct {
	w   io.Writer
	typ byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxFrame)
		if err := writeFrame(f.w, f.typ, rest[:n]); err != nil {
			return len(p) - len(rest), err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

// readLine reads one JSON line into v.
func readLine(r *bufio.Reader, v any) error {
	var line []byte
	for {
		chunk, more, err := r.ReadLine()
		if err != nil {
			return err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return errors.New("holder line too long")
		}
		if !more {
			break
		}
	}
	return json.Unmarshal(line, v)
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
