package cloud

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/holder"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
)

// SSH reaches machines over SSH: it dials (honouring ~/.ssh/config and
// ssh-agent, checking host keys), checks prerequisites, installs the
// helper and starts its daemon, then speaks the helper protocol.
type SSH struct {
	// KnownHosts is butter's own known_hosts; default beside the
	// inventory's folder (~/.config/butter/known_hosts).
	KnownHosts string
	// Helpers says where helper binaries come from.
	Helpers remote.HelperOptions
	// InstallPrerequisites is asked before missing packages are installed
	// on a machine (command is what will run there, as root); nil refuses,
	// and the error shows the command.
	InstallPrerequisites func(ctx context.Context, machine, missing, command string) (bool, error)
	// SSHConfig and AgentSocket override ~/.ssh/config and $SSH_AUTH_SOCK
	// ("none": none), for tests and labs.
	SSHConfig, AgentSocket string
	// IdentityFiles are tried when the inventory names none.
	IdentityFiles []string
	// Transcript, if set, receives every protocol message with every
	// machine (see remote.DialOptions.Transcript).
	Transcript io.Writer
	// Log records every dial, command and helper call (remote.DialOptions.Log).
	Log *slog.Logger
	// Holder, if set, is asked first for a machine whose helper runs (not
	// at first contact, nor when a host key is to be trusted, nor with a
	// Transcript): its held SSH connection saves the verb a dial. Whatever
	// else goes wrong with it, Connect dials itself.
	Holder *holder.Dialer
}

// DefaultKnownHosts is butter's known_hosts file.
func DefaultKnownHosts() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "butter", "known_hosts")
}

// Connect implements Connector.
func (s SSH) Connect(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error) {
	o := remote.DialOptions{User: m.User, Port: m.Port, KnownHosts: s.KnownHosts,
		AcceptNewHostKey: trust.AcceptNew, HostKey: trust.Pinned, KnownHostsReadOnly: !installs(ctx),
		SSHConfig: s.SSHConfig, AgentSocket: s.AgentSocket, IdentityFiles: s.IdentityFiles,
		ConnectTimeout: connectTimeout(ctx), Transcript: s.Transcript, Log: s.Log}
	if o.KnownHosts == "" {
		o.KnownHosts = DefaultKnownHosts()
	}
	if m.Identity != "" {
		o.IdentityFiles = []string{m.Identity}
	}
	if trust.Ask != nil {
		o.TrustUnknown = func(ctx context.Context, host string, key ssh.PublicKey) (bool, error) {
			return trust.Ask(ctx, host, ssh.FingerprintSHA256(key))
		}
	}
	if s.Holder != nil && s.Transcript == nil && m.PublicKey != "" && !trust.AcceptNew && trust.Pinned == "" && trust.Ask == nil {
		l, err := s.viaHolder(ctx, m, o)
		if err == nil {
			return l, nil
		}
		var ue *remote.UnreachableError
		if errors.As(err, &ue) || ctx.Err() != nil {
			return nil, err
		}
	}
	c, err := remote.Dial(ctx, m.Address, o)
	if err != nil {
		return nil, err
	}
	// The fast way, for a machine that has its helper running: straight to
	// the protocol, whose hello checks the helper's version, in one session
	// (the helper for the machine's platform is picked by the shell that
	// starts it). Anything else (first contact, an old helper, no daemon)
	// takes the checks below on a new connection.
	if hs := remote.ExpectedHelpers(s.Helpers); len(hs) == 0 {
		// No helper binary at hand: the machine's platform says which is
		// missing.
		if _, err := c.ExpectedHelper(ctx, s.Helpers); err != nil && ctx.Err() != nil {
			// Out of time asking the platform: said as that, not as
			// the checks below failing for want of it.
			c.Close()
			return nil, err
		} else if err != nil && !installs(ctx) {
			c.Close()
			return nil, fmt.Errorf("%w (%v)", ErrHelperNotCurrent, err)
		}
	} else {
		mach, err := remote.ConnectAny(ctx, c, hs)
		switch {
		case err == nil:
			route := Route{Addr: c.RemoteIP(), Jumped: c.Jumped(), Version: mach.Helper().Version}
			return &sshLink{m: mach, route: route}, nil
		case ctx.Err() != nil:
			return nil, err
		case !installs(ctx):
			// A dry run: installing or starting a helper is a change.
			return nil, fmt.Errorf("%w (%v)", ErrHelperNotCurrent, err)
		}
		if c, err = remote.Dial(ctx, m.Address, o); err != nil {
			return nil, err
		}
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	// Steps are said when they happen; the prerequisites' notes (such as
	// WireGuard in userspace) once, at first contact (the machine has no
	// key yet: machine add), and in machine list's problem column after.
	first := m.PublicKey == ""
	if first {
		say(steps, m.Name, "connected as "+c.User+"; checking prerequisites")
	}
	p, err := c.CheckPrerequisites(ctx)
	if err != nil {
		return nil, err
	}
	if first {
		for _, n := range p.Notes {
			say(steps, m.Name, n)
		}
	}
	if !p.OK() {
		var what []string
		for _, x := range p.Missing {
			what = append(what, x.What)
		}
		missing := strings.Join(what, ", ")
		if p.InstallCommand == "" {
			return nil, fmt.Errorf("missing %s, which no package provides here: %s", missing, p.Missing[0].Detail)
		}
		yes := false
		if s.InstallPrerequisites != nil {
			if yes, err = s.InstallPrerequisites(ctx, m.Name, missing, p.InstallCommand); err != nil {
				return nil, err
			}
		}
		if !yes {
			return nil, fmt.Errorf("missing %s; install with `%s` on the machine, or let butter do it (--yes)", missing, p.InstallCommand)
		}
		say(steps, m.Name, "installing "+missing)
		if err := c.InstallPrerequisites(ctx, p, io.Discard); err != nil {
			return nil, err
		}
	}
	h, err := c.InstallHelper(ctx, s.Helpers)
	if err != nil {
		return nil, err
	}
	if h.Uploaded {
		say(steps, m.Name, "installed the helper "+h.Version)
	}
	var args []string
	if m.Accel != "" {
		args = []string{"--accel", m.Accel}
	}
	d, err := c.StartDaemon(ctx, h, remote.DaemonOptions{Args: args})
	if err != nil {
		return nil, err
	}
	if d.Started {
		say(steps, m.Name, "started the helper daemon ("+d.Mode+")")
	}
	route := Route{Addr: c.RemoteIP(), Jumped: c.Jumped(), Version: h.Version}
	mach, err := remote.Connect(ctx, c, h)
	if err != nil {
		return nil, err
	}
	ok = true
	return &sshLink{m: mach, route: route}, nil
}

type sshLink struct {
	m     *remote.Machine
	route Route
}

func (l *sshLink) Helper(ctx context.Context) (Helper, error) { return l.m.Client(ctx) }
func (l *sshLink) Via() Route                                 { return l.route }
func (l *sshLink) Close() error                               { return l.m.Close() }

func (l *sshLink) Console(ctx context.Context, vmName string, in io.Reader, out io.Writer) error {
	return l.m.Console(ctx, vmName, in, out)
}

// DialTCP implements tcpDialer.
func (l *sshLink) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	return l.m.DialTCP(ctx, addr)
}

// Upload hashes the operator's file (unless f has its hash already) and
// streams it into the machine's image store, which keeps it only if size
// and hash match, and reads nothing when it has the content already.
func (l *sshLink) Upload(ctx context.Context, kind string, f *helperapi.File, progress func(helperapi.Progress)) error {
	if f.SHA256 == "" {
		if err := sumFile(f); err != nil {
			return err
		}
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	name, n := filepath.Base(f.Path), f.Size
	_, err = l.m.ImportImage(ctx, remote.ImageUpload{Name: name, Kind: kind, Size: n, SHA256: f.SHA256, Body: file,
		Progress: func(sent int64) {
			if progress != nil {
				progress(helperapi.Progress{Name: name, Phase: helperapi.PhaseUpload, Done: sent, Total: n})
			}
		}})
	return err
}

// sumFile fills in f's Size and SHA256 from its file.
func sumFile(f *helperapi.File) error {
	file, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer file.Close()
	h := sha256.New()
	n, err := io.Copy(h, file)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Path, err)
	}
	f.Size, f.SHA256 = n, hex.EncodeToString(h.Sum(nil))
	return nil
}
