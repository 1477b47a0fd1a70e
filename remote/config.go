package remote

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	// ssh_config reads OpenSSH's client configuration: Host patterns with
	// negation, Include, Match Host/all, first-value-wins. It is small,
	// maintained, has no dependencies and is what many Go SSH tools use;
	// writing our own would get the matching rules subtly wrong.
	"github.com/kevinburke/ssh_config"
)

// hop is one SSH server to log in to, resolved from the options and
// ~/.ssh/config.
type hop struct {
	// Alias is the name as given (the ssh_config Host it matched).
	Alias string
	// Host is the name or address dialed (HostName), Port its port.
	Host string
	Port int
	User string
	// IdentityFiles are key files to offer, in order; DefaultIdentity
	// marks them as OpenSSH's defaults (a missing default is no error).
	IdentityFiles   []string
	DefaultIdentity bool
	// Jumps are the ProxyJump hops, first to last.
	Jumps []hop
	// ProxyCommand, if set, is the command (tokens expanded) whose
	// standard input and output are the connection (`ssh -G` only).
	ProxyCommand string
	// KnownHosts are the known_hosts files the ssh config names
	// (UserKnownHostsFile, GlobalKnownHostsFile; `ssh -G` only).
	KnownHosts []string
	// HostKeyAlias, if set, is the name the host key is looked up and
	// recorded under instead of host:port, as OpenSSH does.
	HostKeyAlias string
}

// Addr is host:port.
func (h hop) Addr() string { return net.JoinHostPort(h.Host, strconv.Itoa(h.Port)) }

// keyAddr is the name h's host key is known by: HostKeyAlias as it is
// (OpenSSH adds no port to it; ":22" is what known_hosts drops), or
// host:port.
func (h hop) keyAddr() string {
	if h.HostKeyAlias != "" {
		return net.JoinHostPort(h.HostKeyAlias, "22")
	}
	return h.Addr()
}

// sshConfig is the OpenSSH client configuration: the user's file, then the
// system's.
type sshConfig struct {
	files []*ssh_config.Config
}

// loadSSHConfig reads path (if empty, ~/.ssh/config; "none" reads nothing)
// and /etc/ssh/ssh_config. A missing file is no error; a file that does
// not parse is.
func loadSSHConfig(path string) (*sshConfig, error) {
	c := &sshConfig{}
	if path == "none" {
		return c, nil
	}
	paths := []string{path, "/etc/ssh/ssh_config"}
	if path == "" {
		paths[0] = filepath.Join(homeDir(), ".ssh", "config")
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read ssh config: %w", err)
		}
		cfg, err := ssh_config.Decode(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read ssh config %s: %w", p, err)
		}
		c.files = append(c.files, cfg)
	}
	return c, nil
}

// get is the first value of key for alias, as OpenSSH takes it.
func (c *sshConfig) get(alias, key string) (string, error) {
	for _, f := range c.files {
		v, err := f.Get(alias, key)
		if err != nil {
			return "", fmt.Errorf("ssh config %s for %s: %w", key, alias, err)
		}
		if v != "" {
			return v, nil
		}
	}
	return "", nil
}

// getAll is every value of key for alias in the first file that has one.
func (c *sshConfig) getAll(alias, key string) ([]string, error) {
	for _, f := range c.files {
		v, err := f.GetAll(alias, key)
		if err != nil {
			return nil, fmt.Errorf("ssh config %s for %s: %w", key, alias, err)
		}
		if len(v) > 0 {
			return v, nil
		}
	}
	return nil, nil
}

// defaultIdentities are the key files OpenSSH tries when none is given.
var defaultIdentities = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// resolve works out how to reach alias: explicit options win over the ssh
// config, which wins over OpenSSH's defaults. Jump hosts are resolved the
// same way, but their own ProxyJump is not followed (depth 1).
func (c *sshConfig) resolve(alias string, o DialOptions, depth int) (hop, error) {
	// What was given explicitly: the options for the target, the
	// user@host:port form for a jump host.
	// Both also take host:port.
	alias, user, port, err := splitTarget(alias, o, depth)
	if err != nil {
		return hop{}, err
	}
	files := o.IdentityFiles
	h := hop{Alias: alias, Host: alias, Port: port, User: user}
	if v, err := c.get(alias, "ProxyCommand"); err != nil {
		return hop{}, err
	} else if v != "" && v != "none" {
		return hop{}, fmt.Errorf("ssh config for %s sets ProxyCommand, which butter runs only where OpenSSH's ssh is installed (to read the config as ssh does); install it, or use ProxyJump", alias)
	}
	if v, err := c.get(alias, "HostName"); err != nil {
		return hop{}, err
	} else if v != "" {
		h.Host = strings.ReplaceAll(v, "%h", alias)
	}
	if v, err := c.get(alias, "HostKeyAlias"); err != nil {
		return hop{}, err
	} else if v != "none" {
		h.HostKeyAlias = v
	}
	if h.Port == 0 {
		v, err := c.get(alias, "Port")
		if err != nil {
			return hop{}, err
		}
		h.Port = 22
		if v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return hop{}, fmt.Errorf("ssh config for %s: Port %q is not a port number", alias, v)
			}
			h.Port = p
		}
	}
	if h.User == "" {
		v, err := c.get(alias, "User")
		if err != nil {
			return hop{}, err
		}
		h.User = v
		if h.User == "" {
			h.User = localUser()
		}
	}
	if len(files) == 0 {
		var err error
		if files, err = c.getAll(alias, "IdentityFile"); err != nil {
			return hop{}, err
		}
	}
	if len(files) == 0 {
		h.DefaultIdentity = true
		for _, n := range defaultIdentities {
			files = append(files, filepath.Join(homeDir(), ".ssh", n))
		}
	}
	for _, f := range files {
		h.IdentityFiles = append(h.IdentityFiles, expandTokens(f, h))
	}
	if depth > 0 {
		return h, nil
	}
	jump := o.ProxyJump
	if jump == "" {
		v, err := c.get(alias, "ProxyJump")
		if err != nil {
			return hop{}, err
		}
		jump = v
	}
	h.Jumps, err = jumps(alias, jump, func(j string) (hop, error) { return c.resolve(j, DialOptions{}, depth+1) })
	return h, err
}

// splitTarget reads what a target names beside its host: user@ (for a
// jump host) and :port; the options' user and port win.
func splitTarget(alias string, o DialOptions, depth int) (host, user string, port int, err error) {
	user, port = o.User, o.Port
	if depth > 0 {
		if u, rest, ok := strings.Cut(alias, "@"); ok {
			user, alias = u, rest
		}
	}
	if h, p, err := net.SplitHostPort(alias); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", "", 0, fmt.Errorf("host %q: bad port %q", alias, p)
		}
		alias = h
		if port == 0 {
			port = n
		}
	}
	return alias, user, port, nil
}

// jumps resolves a ProxyJump list ("none": none) with resolve.
func jumps(alias, list string, resolve func(string) (hop, error)) ([]hop, error) {
	if list == "" || list == "none" {
		return nil, nil
	}
	var out []hop
	for _, j := range strings.Split(list, ",") {
		jh, err := resolve(strings.TrimPrefix(strings.TrimSpace(j), "ssh://"))
		if err != nil {
			return nil, fmt.Errorf("ProxyJump for %s: %w", alias, err)
		}
		out = append(out, jh)
	}
	return out, nil
}

// expandTokens expands ~ and the ssh_config tokens that make sense for
// key files: %d (home), %u (local user), %h (host), %r (remote user), %%.
func expandTokens(s string, h hop) string {
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = homeDir() + s[1:]
	}
	return expandPercent(s, map[byte]string{'d': homeDir(), 'u': localUser(), 'h': h.Host, 'r': h.User})
}

// expandPercent replaces %X by tokens[X] and %% by %; an unknown token
// stays as it is.
func expandPercent(s string, tokens map[byte]string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		if v, ok := tokens[s[i]]; ok {
			b.WriteString(v)
		} else if s[i] == '%' {
			b.WriteByte('%')
		} else {
			b.WriteByte('%')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// homeDir is $HOME, else the user database's home.
func homeDir() string {
	if h, err := os.UserHomeDir(); err == nil {
		return h
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return "/"
}

// localUser is the operator's login name.
func localUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}
