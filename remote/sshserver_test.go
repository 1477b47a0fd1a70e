package remote

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/butter-cloud/butter/internal/testbed"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testServer is an in-process SSH server on a loopback port: it logs in
// the users it knows with their keys, runs exec requests through handler
// (default: sh -c, as this process's user) and, if forward is set, opens
// direct-tcpip channels (for ProxyJump).
type testServer struct {
	t        *testing.T
	addr     string
	hostKeys []ssh.Signer
	users    map[string][]ssh.PublicKey
	forward  bool
	handler  func(cmd string, ch ssh.Channel, gone <-chan struct{}) int

	mu       sync.Mutex
	execs    []string // commands run, as unwire gives them
	forwards []string // direct-tcpip targets
	conns    []*ssh.ServerConn
}

func newKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, s := newUserKey(t)
	return s
}

func newECDSAKey(t *testing.T) ssh.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer starts s (with one ed25519 host key unless s has some).
func startServer(t *testing.T, s *testServer) *testServer {
	t.Helper()
	s.t = t
	if len(s.hostKeys) == 0 {
		s.hostKeys = []ssh.Signer{newKey(t)}
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range s.users[md.User()] {
				if string(k.Marshal()) == string(key.Marshal()) {
					return nil, nil
				}
			}
			return nil, fmt.Errorf("no")
		},
	}
	for _, k := range s.hostKeys {
		cfg.AddHostKey(k)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(c, cfg, &wg) })
		}
	})
	return s
}

func (s *testServer) port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// dropAll closes every connection, as a network failure would.
func (s *testServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *testServer) serve(c net.Conn, cfg *ssh.ServerConfig, wg *sync.WaitGroup) {
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	s.conns = append(s.conns, sc)
	s.mu.Unlock()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, reqs, err := nc.Accept()
			if err != nil {
				continue
			}
			wg.Go(func() { s.session(ch, reqs) })
		case "direct-tcpip":
			if !s.forward {
				nc.Reject(ssh.Prohibited, "no forwarding")
				continue
			}
			var msg struct {
				Host     string
				Port     uint32
				OrigHost string
				OrigPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			target := net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port)))
			s.mu.Lock()
			s.forwards = append(s.forwards, target)
			s.mu.Unlock()
			out, err := net.Dial("tcp", target)
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, reqs, err := nc.Accept()
			if err != nil {
				out.Close()
				continue
			}
			go ssh.DiscardRequests(reqs)
			wg.Go(func() {
				done := make(chan struct{}, 2)
				go func() { io.Copy(out, ch); done <- struct{}{} }()
				go func() { io.Copy(ch, out); done <- struct{}{} }()
				<-done
				ch.Close()
				out.Close()
			})
		default:
			nc.Reject(ssh.UnknownChannelType, "no")
		}
	}
}

func (s *testServer) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(false, nil)
			continue
		}
		var msg struct{ Command string }
		ssh.Unmarshal(req.Payload, &msg)
		req.Reply(true, nil)
		s.mu.Lock()
		s.execs = append(s.execs, unwire(msg.Command))
		s.mu.Unlock()
		gone := make(chan struct{})
		go func() {
			// Signals and a closed channel both end the command.
			for r := range reqs {
				if r.Type == "signal" {
					closeOnce(gone)
				}
				r.Reply(false, nil)
			}
			closeOnce(gone)
		}()
		h := s.handler
		if h == nil {
			h = shellHandler
		}
		status := h(msg.Command, ch, gone)
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(status))
		ch.SendRequest("exit-status", false, b[:])
		return
	}
}

// unwire gives the command line a Client's exec request carries (see
// wireLine), prefixed with "sudo -n " when it runs through sudo; text in
// another form comes back as it is.
func unwire(cmd string) string {
	sudo, rest := "", cmd
	if r, ok := strings.CutPrefix(rest, "sudo -n "); ok {
		sudo, rest = "sudo -n ", r
	}
	esc, ok := strings.CutPrefix(rest, `sh -c 'eval "$(printf "`)
	if !ok {
		return cmd
	}
	esc, ok = strings.CutSuffix(esc, `")"'`)
	if !ok || len(esc)%4 != 0 {
		return cmd
	}
	line := make([]byte, 0, len(esc)/4)
	for i := 0; i < len(esc); i += 4 {
		v, err := strconv.ParseUint(esc[i+1:i+4], 8, 8)
		if esc[i] != '\\' || err != nil {
			return cmd
		}
		line = append(line, byte(v))
	}
	return sudo + string(line)
}

var closeMu sync.Mutex

func closeOnce(c chan struct{}) {
	closeMu.Lock()
	defer closeMu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

// shellHandler runs cmd with sh -c; the command's process group is killed
// when the client signals or closes the channel.
func shellHandler(cmd string, ch ssh.Channel, gone <-chan struct{}) int {
	return runOn(exec.Command("sh", "-c", cmd), ch, gone)
}

// runOn runs c with the channel as its standard streams.
func runOn(c *exec.Cmd, ch ssh.Channel, gone <-chan struct{}) int {
	c.Stdout, c.Stderr = ch, ch.Stderr()
	stdin, _ := c.StdinPipe()
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return 127
	}
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-gone:
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}()
	err := c.Wait()
	close(done)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if st := ee.ExitCode(); st >= 0 {
			return st
		}
		return 255
	}
	return 0
}

// knownHostsFile writes a known_hosts file recording key for addr.
func knownHostsFile(t *testing.T, dir, addr string, keys ...ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(dir, "known_hosts")
	var b []byte
	for _, k := range keys {
		b = append(b, knownhosts.Line([]string{knownhosts.Normalize(addr)}, k)+"\n"...)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeKey writes signer's private key (key is the raw private key) to a
// file, encrypted with passphrase if not empty.
func writeKey(t *testing.T, path string, priv any, passphrase string) {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newUserKey makes an ed25519 key pair: the raw private key and its signer.
func newUserKey(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	k := testbed.NewUserKey(t)
	return k.Private, k.Signer
}

// startAgent serves an in-process ssh-agent holding keys on a unix socket
// and returns the socket's path.
func startAgent(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				agent.ServeAgent(kr, c)
				c.Close()
			})
		}
	})
	return sock
}

// isolate points HOME at an empty folder and drops the agent from the
// environment, so that the operator's own files never take part.
func isolate(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	return home
}

func (s *testServer) sawExec(cmd string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.execs, cmd)
}
