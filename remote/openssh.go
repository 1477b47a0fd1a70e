package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Where OpenSSH's client is installed, a host is resolved by `ssh -G`:
// OpenSSH itself evaluates the configuration (Match in all its forms,
// final included; Include; CanonicalizeHostname; tokens), so a machine is
// reached exactly as `ssh` would reach it. Without `ssh`, the
// ssh_config library reads the files (config.go).

// sshGTimeout bounds one `ssh -G` (Match exec runs commands).
const sshGTimeout = 10 * time.Second

// openSSH is the ssh binary to resolve hosts with, if there is one and
// the options ask for a config at all.
func openSSH(o DialOptions) (string, bool) {
	if o.SSHConfig == "none" {
		return "", false
	}
	bin, err := exec.LookPath("ssh")
	return bin, err == nil
}

// sshG runs `ssh -G` for host with the given user and port (0: the
// config's) and returns its keys, lower-case, with every value of each.
func sshG(ctx context.Context, bin, config, host, user string, port int) (map[string][]string, error) {
	args := []string{"-G"}
	var stdin string
	if config == "" {
		if stdin = userConfigBesideHome(); stdin != "" {
			config = "/dev/stdin"
		}
	}
	if config != "" {
		args = append(args, "-F", config)
	}
	if user != "" {
		args = append(args, "-l", user)
	}
	if port != 0 {
		args = append(args, "-p", strconv.Itoa(port))
	}
	// "--": a host that starts with "-" is a host, not an option.
	args = append(args, "--", host)
	ctx, cancel := context.WithTimeout(ctx, sshGTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("resolve %s with `ssh -G` (your ssh config): %w: %s", host, err, strings.TrimSpace(stderr.String()))
	}
	keys := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		keys[strings.ToLower(k)] = append(keys[strings.ToLower(k)], v)
	}
	return keys, sc.Err()
}

// userConfigBesideHome is, when $HOME is not the home the user database
// has (which is where ssh looks), a config for `-F /dev/stdin` that reads
// $HOME/.ssh/config then the system's, as ssh would with that home: butter
// reads the user's files under $HOME, so the ssh config comes from there
// too. "" when the two homes agree.
func userConfigBesideHome() string {
	u, err := user.Current()
	if err != nil || u.HomeDir == homeDir() {
		return ""
	}
	return fmt.Sprintf("Include %q\nInclude /etc/ssh/ssh_config\n", filepath.Join(homeDir(), ".ssh", "config"))
}

// first is the first value of key, "" for none or "none".
func first(keys map[string][]string, key string) string {
	if v := keys[key]; len(v) > 0 && v[0] != "none" {
		return v[0]
	}
	return ""
}

// openSSHDefaultIdentities are the key files OpenSSH tries when none is
// configured; `ssh -G` lists them then.
var openSSHDefaultIdentities = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_xmss", "id_dsa"}

// resolveOpenSSH is resolve (config.go) by `ssh -G`. Explicit options win
// as on ssh's command line; jump hosts are resolved the same way, but
// their own ProxyJump is not followed (depth 1).
func resolveOpenSSH(ctx context.Context, bin string, alias string, o DialOptions, depth int) (hop, error) {
	alias, user, port, err := splitTarget(alias, o, depth)
	if err != nil {
		return hop{}, err
	}
	files := o.IdentityFiles
	keys, err := sshG(ctx, bin, o.SSHConfig, alias, user, port)
	if err != nil {
		return hop{}, err
	}
	h := hop{Alias: alias, Host: first(keys, "hostname"), User: first(keys, "user"), HostKeyAlias: first(keys, "hostkeyalias")}
	if h.Host == "" {
		h.Host = alias
	}
	if h.User == "" {
		h.User = localUser()
	}
	if h.Port, err = strconv.Atoi(first(keys, "port")); err != nil || h.Port < 1 || h.Port > 65535 {
		return hop{}, fmt.Errorf("ssh config for %s: port %q is not a port number", alias, first(keys, "port"))
	}
	if len(files) == 0 {
		files = keys["identityfile"]
		h.DefaultIdentity = !slices.ContainsFunc(files, func(f string) bool {
			return filepath.Dir(f) != "~/.ssh" || !slices.Contains(openSSHDefaultIdentities, filepath.Base(f))
		})
	}
	for _, f := range files {
		h.IdentityFiles = append(h.IdentityFiles, expandTokens(f, h))
	}
	for _, k := range []string{"userknownhostsfile", "globalknownhostsfile"} {
		for _, v := range keys[k] {
			for _, f := range strings.Fields(v) {
				if f != "none" {
					h.KnownHosts = append(h.KnownHosts, expandTokens(f, h))
				}
			}
		}
	}
	if depth > 0 {
		return h, nil
	}
	jump := o.ProxyJump
	if jump == "" {
		jump = first(keys, "proxyjump")
		if pc := first(keys, "proxycommand"); pc != "" && jump == "" {
			h.ProxyCommand = proxyCommandTokens(pc, alias, h)
		}
	}
	h.Jumps, err = jumps(alias, jump, func(j string) (hop, error) {
		return resolveOpenSSH(ctx, bin, j, DialOptions{SSHConfig: o.SSHConfig}, depth+1)
	})
	return h, err
}

// proxyCommandTokens expands ProxyCommand's tokens as OpenSSH does: %h the
// host name, %p the port, %r the user, %n the name as given, %%.
func proxyCommandTokens(s, alias string, h hop) string {
	return expandPercent(s, map[byte]string{'h': h.Host, 'p': strconv.Itoa(h.Port), 'r': h.User, 'n': alias})
}

// errProxyExited is a ProxyCommand that ended.
var errProxyExited = errors.New("the ProxyCommand exited")
