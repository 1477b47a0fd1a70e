package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// DialOptions say how to reach and trust a machine. The zero value reads
// ~/.ssh/config, uses ssh-agent and the usual key files, and trusts only
// host keys already in a known_hosts file.
type DialOptions struct {
	// User, Port, IdentityFiles and ProxyJump override ~/.ssh/config for
	// the machine itself (not for jump hosts). Empty: from the config,
	// else the local user name, 22, ~/.ssh/id_{ed25519,ecdsa,rsa}.
	User          string
	Port          int
	IdentityFiles []string
	ProxyJump     string

	// SSHConfig is the OpenSSH client configuration to honour
	// (HostName, User, Port, IdentityFile, ProxyJump); empty means
	// ~/.ssh/config, "none" none. /etc/ssh/ssh_config is read after it.
	SSHConfig string
	// AgentSocket is ssh-agent's socket; empty means $SSH_AUTH_SOCK,
	// "none" no agent.
	AgentSocket string

	// KnownHosts is butter's own known_hosts file (say
	// ~/.config/butter/known_hosts): read, and where newly trusted keys are
	// written. Empty: trusted keys are not recorded.
	KnownHosts string
	// KnownHostsReadOnly: KnownHosts is read, and a key trusted is not
	// written to it (a dry run).
	KnownHostsReadOnly bool
	// UserKnownHosts are read too, never written; nil means
	// ~/.ssh/known_hosts, ~/.ssh/known_hosts2 and /etc/ssh/ssh_known_hosts.
	UserKnownHosts []string
	// AcceptNewHostKey trusts a key no file knows (never a changed one).
	AcceptNewHostKey bool
	// HostKey pins the machine's key by its SHA256 fingerprint
	// ("SHA256:…"): any other key is refused, and a matching unknown one is
	// trusted. It applies to the machine, not to jump hosts.
	HostKey string
	// TrustUnknown, if set, is asked about a key no file knows (after
	// HostKey and AcceptNewHostKey); host is host:port. It may prompt the
	// user; ssh.FingerprintSHA256(key) is what to show.
	TrustUnknown func(ctx context.Context, host string, key ssh.PublicKey) (bool, error)

	// ConnectTimeout bounds each TCP connect; default 15 s. The rest of
	// the handshake is bounded by ctx (TrustUnknown may wait for a person).
	ConnectTimeout time.Duration
	// KeepAlive is how often an idle connection is checked; default 30 s,
	// negative: never. A connection that does not answer is closed.
	KeepAlive time.Duration

	// Transcript, if set, receives every protocol message exchanged with
	// the machine's helper, a line each ("HOST > {…}" sent, "HOST < {…}"
	// received). Write is called once per line, from several goroutines
	// and connections: give a writer safe for that (an *os.File in append
	// mode is).
	Transcript io.Writer
	// Log records every dial and every command run, with its duration and
	// exit status (see log.go for what never goes in); nil: no log.
	Log *slog.Logger
}

func (o DialOptions) userKnownHosts() []string {
	if o.UserKnownHosts != nil {
		return o.UserKnownHosts
	}
	home := homeDir()
	return []string{filepath.Join(home, ".ssh", "known_hosts"), filepath.Join(home, ".ssh", "known_hosts2"), "/etc/ssh/ssh_known_hosts"}
}

// Client is an SSH connection to a machine, possibly through jump hosts.
// Its methods may be called from many goroutines.
type Client struct {
	// Host is the machine as given to Dial (an ssh_config alias or an
	// address); Addr is host:port as dialed; User the login user.
	Host string
	Addr string
	User string

	opts  DialOptions
	conn  *ssh.Client
	jumps []*ssh.Client // first hop first

	waitOnce sync.Once
	done     chan struct{} // closed when conn has closed; see closed
}

// Dial connects and logs in to host (an address or an ~/.ssh/config
// alias), checking its host key.
func Dial(ctx context.Context, host string, o DialOptions) (*Client, error) {
	pin, err := normalizePin(o.HostKey)
	if err != nil {
		return nil, err
	}
	target, err := resolveHost(ctx, host, o)
	if err != nil {
		return nil, err
	}
	read := o.userKnownHosts()
	if o.UserKnownHosts == nil && target.KnownHosts != nil {
		read = target.KnownHosts // as the ssh config says
	}
	hk, err := newHostKeys(read, o.KnownHosts)
	if err != nil {
		return nil, err
	}
	if o.KnownHostsReadOnly {
		hk.record = ""
	}
	a := openAgent(o.AgentSocket)
	defer a.close()

	c := &Client{Host: host, Addr: target.Addr(), User: target.User, opts: o}
	hops := append(append([]hop(nil), target.Jumps...), target)
	var prev *ssh.Client
	start := time.Now()
	for i, h := range hops {
		policy := trustPolicy{acceptNew: o.AcceptNewHostKey, ask: o.TrustUnknown}
		if i == len(hops)-1 {
			policy.pin = pin
		}
		cl, err := dialHop(ctx, prev, h, hk, policy, a, o)
		if err != nil {
			logDial(ctx, o.log(), host, h.Addr(), h.User, i, start, err)
			c.Close()
			if i < len(hops)-1 {
				return nil, fmt.Errorf("reach %s through jump host %s: %w", host, h.Addr(), err)
			}
			return nil, err
		}
		if i < len(hops)-1 {
			c.jumps = append(c.jumps, cl)
		} else {
			c.conn = cl
		}
		prev = cl
	}
	if o.KeepAlive >= 0 {
		every := o.KeepAlive
		if every == 0 {
			every = 30 * time.Second
		}
		go c.keepAlive(every)
	}
	logDial(ctx, o.log(), host, c.Addr, c.User, len(target.Jumps), start, nil)
	return c, nil
}

// resolveHost works out how to reach host: by `ssh -G` where OpenSSH is
// installed, else by reading the ssh config with the library.
func resolveHost(ctx context.Context, host string, o DialOptions) (hop, error) {
	if bin, ok := openSSH(o); ok {
		return resolveOpenSSH(ctx, bin, host, o, 0)
	}
	cfg, err := loadSSHConfig(o.SSHConfig)
	if err != nil {
		return hop{}, err
	}
	return cfg.resolve(host, o, 0)
}

// dialHop connects to h, directly or through prev, and logs in.
func dialHop(ctx context.Context, prev *ssh.Client, h hop, hk *hostKeys, policy trustPolicy, a *agentConn, o DialOptions) (*ssh.Client, error) {
	timeout := o.ConnectTimeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	var conn net.Conn
	var err error
	switch {
	case prev == nil && h.ProxyCommand != "":
		conn, err = dialProxyCommand(dctx, h.ProxyCommand, h.Addr())
	case prev == nil:
		d := net.Dialer{}
		conn, err = d.DialContext(dctx, "tcp", h.Addr())
	default:
		conn, err = prev.DialContext(dctx, "tcp", h.Addr())
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s: %w", h.Addr(), ctx.Err())
		}
		return nil, &UnreachableError{Addr: h.Addr(), Timeout: timeout, Err: err}
	}
	signers, notes := a.signers(h)
	cfg := &ssh.ClientConfig{
		User:              h.User,
		HostKeyCallback:   hk.callback(ctx, policy),
		HostKeyAlgorithms: hk.algorithms(h.keyAddr()),
	}
	if len(signers) > 0 {
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signers...)}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	// The address given here is only what the host key is checked
	// (and recorded) under.
	sc, chans, reqs, err := ssh.NewClientConn(conn, h.keyAddr(), cfg)
	stop()
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("log in to %s: %w", h.Addr(), ctx.Err())
		}
		var hke *HostKeyError
		if errors.As(err, &hke) {
			return nil, hke
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, &AuthError{User: h.User, Host: h.Addr(), Tried: notes.tried, Problems: notes.problems}
		}
		return nil, fmt.Errorf("ssh to %s: %w", h.Addr(), err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// UnreachableError is a TCP connect that failed: the machine is away (off,
// asleep, its network down) or nothing listens at the address.
type UnreachableError struct {
	Addr    string
	Timeout time.Duration
	Err     error
}

func (e *UnreachableError) Error() string {
	var ne net.Error
	if errors.As(e.Err, &ne) && ne.Timeout() {
		return fmt.Sprintf("no answer from %s within %s", e.Addr, e.Timeout)
	}
	return fmt.Sprintf("connect to %s: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// AuthError is a refused login.
type AuthError struct {
	User, Host string
	// Tried describes the keys offered; Problems the keys that could not
	// be offered (encrypted without an agent, unreadable).
	Tried    []string
	Problems []string
}

func (e *AuthError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "log in to %s as %q: refused", e.Host, e.User)
	if len(e.Tried) == 0 {
		b.WriteString("; butter had no key to offer (no ssh-agent keys, no readable key file)")
	} else {
		fmt.Fprintf(&b, " (methods tried: publickey with %s)", strings.Join(e.Tried, ", "))
	}
	for _, p := range e.Problems {
		b.WriteString("; " + p)
	}
	fmt.Fprintf(&b, "; check the user name, and that one of your public keys is in ~%s/.ssh/authorized_keys on the machine", e.User)
	return b.String()
}

// agentConn is a connection to ssh-agent, if there is one.
type agentConn struct {
	conn   net.Conn
	agent  agent.ExtendedAgent
	keys   []*agent.Key
	reason string // why there is no agent
}

func openAgent(socket string) *agentConn {
	if socket == "" {
		socket = os.Getenv("SSH_AUTH_SOCK")
		if socket == "" {
			return &agentConn{reason: "no ssh-agent (SSH_AUTH_SOCK is not set)"}
		}
	}
	if socket == "none" {
		return &agentConn{reason: "ssh-agent not used"}
	}
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return &agentConn{reason: fmt.Sprintf("ssh-agent at %s does not answer: %v", socket, err)}
	}
	a := agent.NewClient(conn)
	keys, err := a.List()
	if err != nil {
		conn.Close()
		return &agentConn{reason: fmt.Sprintf("ssh-agent at %s: %v", socket, err)}
	}
	return &agentConn{conn: conn, agent: a, keys: keys}
}

func (a *agentConn) close() {
	if a.conn != nil {
		a.conn.Close()
	}
}

func (a *agentConn) has(pub ssh.PublicKey) bool {
	for _, k := range a.keys {
		if bytes.Equal(k.Marshal(), pub.Marshal()) {
			return true
		}
	}
	return false
}

type authNotes struct{ tried, problems []string }

// signers are the agent's keys, then h's key files that the agent does not
// hold already.
func (a *agentConn) signers(h hop) ([]ssh.Signer, authNotes) {
	var out []ssh.Signer
	var n authNotes
	if a.agent != nil {
		if s, err := a.agent.Signers(); err == nil && len(s) > 0 {
			out = append(out, s...)
			n.tried = append(n.tried, fmt.Sprintf("%d ssh-agent key(s)", len(s)))
		}
	}
	for _, f := range h.IdentityFiles {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			if !h.DefaultIdentity {
				n.problems = append(n.problems, fmt.Sprintf("key file %s does not exist", f))
			}
			continue
		}
		if err != nil {
			n.problems = append(n.problems, fmt.Sprintf("key file %s: %v", f, err))
			continue
		}
		s, err := ssh.ParsePrivateKey(data)
		var pm *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pm):
			if pm.PublicKey != nil && a.has(pm.PublicKey) {
				continue // the agent offers it
			}
			why := a.reason
			if why == "" {
				why = "it is not in ssh-agent"
			}
			n.problems = append(n.problems, fmt.Sprintf("key file %s is encrypted and %s: add it to the agent (ssh-add %s), butter does not ask for passphrases", f, why, shellQuote(f)))
			continue
		case err != nil:
			n.problems = append(n.problems, fmt.Sprintf("key file %s: %v", f, err))
			continue
		}
		if a.has(s.PublicKey()) {
			continue
		}
		out = append(out, s)
		n.tried = append(n.tried, "key file "+f)
	}
	return out, n
}

// keepAlive pings the server every d; when it does not answer, it closes
// the connection so that sessions end and callers re-dial. It returns when
// the connection closes.
func (c *Client) keepAlive(d time.Duration) {
	done := c.closed()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-done:
			return
		case err := <-reply:
			if err != nil {
				c.Close()
				return
			}
		case <-time.After(2 * d):
			c.Close()
			return
		}
	}
}

// Close closes the connection and those to the jump hosts.
func (c *Client) Close() error {
	var errs []error
	if c.conn != nil {
		if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for i := len(c.jumps) - 1; i >= 0; i-- {
		if err := c.jumps[i].Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Wait returns when the connection has closed.
func (c *Client) Wait() error { return c.conn.Wait() }

// redial makes a new connection like c.
func (c *Client) redial(ctx context.Context) (*Client, error) {
	return Dial(ctx, c.Host, c.opts)
}
