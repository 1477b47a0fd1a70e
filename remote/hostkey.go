package remote

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Why a host key was refused; a *HostKeyError wraps one of them.
var (
	// ErrHostKeyUnknown: no known_hosts file records a key for the host,
	// and nothing said to trust the one it offered.
	ErrHostKeyUnknown = errors.New("unknown host key")
	// ErrHostKeyChanged: a known_hosts file records a different key for
	// the host. It is refused whatever the options say.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrHostKeyPinned: the key is not the one the caller pinned.
	ErrHostKeyPinned = errors.New("host key does not match the pinned fingerprint")
	// ErrHostKeyRevoked: a known_hosts file marks the key @revoked.
	ErrHostKeyRevoked = errors.New("host key revoked")
)

// HostKeyError is a refused host key.
type HostKeyError struct {
	// Reason is one of the ErrHostKey… values.
	Reason error
	// Host is host:port as checked.
	Host string
	// Key is what the server offered.
	Key ssh.PublicKey
	// Known are the keys the known_hosts files record for Host, with the
	// file and line of each (for ErrHostKeyChanged).
	Known []knownhosts.KnownKey
	// Pin is the pinned fingerprint (for ErrHostKeyPinned).
	Pin string
	// Declined says the caller was asked and said no (ErrHostKeyUnknown).
	Declined bool
}

func (e *HostKeyError) Unwrap() error { return e.Reason }

func (e *HostKeyError) Error() string {
	offered := keyDesc(e.Key)
	switch e.Reason {
	case ErrHostKeyChanged:
		var was []string
		for _, k := range e.Known {
			was = append(was, fmt.Sprintf("%s (recorded in %s line %d)", keyDesc(k.Key), k.Filename, k.Line))
		}
		host := knownhosts.Normalize(e.Host)
		fix := fmt.Sprintf("ssh-keygen -R %s", shellQuote(host))
		if len(e.Known) > 0 {
			fix += " -f " + shellQuote(e.Known[0].Filename)
		}
		return fmt.Sprintf("host key for %s has CHANGED: the server offered %s, but the known key is %s. "+
			"Someone may be intercepting the connection, or the machine was reinstalled. butter refuses to connect; "+
			"if you know the change is legitimate, remove the old key (%s) and connect again",
			e.Host, offered, strings.Join(was, ", "), fix)
	case ErrHostKeyPinned:
		return fmt.Sprintf("host key for %s is %s, not the pinned %s: refused", e.Host, offered, e.Pin)
	case ErrHostKeyRevoked:
		return fmt.Sprintf("host key for %s (%s) is marked @revoked in a known_hosts file: refused", e.Host, offered)
	}
	if e.Declined {
		return fmt.Sprintf("host key for %s (%s) is not known and was not trusted", e.Host, offered)
	}
	return fmt.Sprintf("host key for %s is not known: %s. Check it against the machine's own "+
		"(ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub there), then trust it (e.g. --host-key %s, or --accept-new-host-key)",
		e.Host, offered, keyFileKind(e.Key), fingerprint(e.Key))
}

// keyDesc is "ED25519 key SHA256:…".
func keyDesc(k ssh.PublicKey) string {
	if k == nil {
		return "no key"
	}
	return fmt.Sprintf("%s key %s", keyKind(k), fingerprint(k))
}

func fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// keyKind is how OpenSSH names a key type for people.
func keyKind(k ssh.PublicKey) string {
	switch t := k.Type(); {
	case t == ssh.KeyAlgoED25519:
		return "ED25519"
	case t == ssh.KeyAlgoRSA:
		return "RSA"
	case strings.HasPrefix(t, "ecdsa-"):
		return "ECDSA"
	default:
		return t
	}
}

func keyFileKind(k ssh.PublicKey) string {
	if k == nil {
		return "ed25519"
	}
	return strings.ToLower(keyKind(k))
}

// hostKeys checks host keys against known_hosts files and records newly
// trusted ones in butter's own file.
type hostKeys struct {
	// read are the files consulted, butter's own last.
	read []string
	// record is butter's own file; empty: trusted keys are not recorded.
	record string
	db     ssh.HostKeyCallback
}

// recordMu serializes appends to butter's known_hosts within the process
// (machines are added in parallel).
var recordMu sync.Mutex

// newHostKeys loads the known_hosts files that exist among read and
// record.
func newHostKeys(read []string, record string) (*hostKeys, error) {
	hk := &hostKeys{record: record}
	files := read
	if record != "" {
		files = append(files[:len(files):len(files)], record)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			hk.read = append(hk.read, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
	}
	db, err := knownhosts.New(hk.read...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	hk.db = db
	return hk, nil
}

// probeKey is a key no host has, to ask known_hosts what it records.
var probeKey = sync.OnceValue(func() ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return k
})

// probeAddr stands in for the remote address, which knownhosts only
// consults when no host name is given.
var probeAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}

// known lists the keys recorded for addr (host:port).
func (hk *hostKeys) known(addr string) []knownhosts.KnownKey {
	var ke *knownhosts.KeyError
	if err := hk.db(addr, probeAddr, probeKey()); errors.As(err, &ke) {
		return ke.Want
	}
	return nil
}

// algorithms are the host key algorithms to ask for when connecting to
// addr: those of the keys known_hosts records, so that a server with
// several keys shows the one we know rather than one we do not, which
// would look like a changed key. Nil when nothing is recorded.
func (hk *hostKeys) algorithms(addr string) []string {
	var algos []string
	add := func(a ...string) {
		for _, s := range a {
			if !contains(algos, s) {
				algos = append(algos, s)
			}
		}
	}
	for _, k := range hk.known(addr) {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// trustPolicy says what to do with a key that no known_hosts file records.
type trustPolicy struct {
	pin       string // SHA256:… ; the key must match it, known or not
	acceptNew bool
	ask       func(ctx context.Context, host string, key ssh.PublicKey) (bool, error)
}

// callback checks the key of the server at addr. A key known and matching
// passes; a changed or revoked key is refused always; an unknown key is
// trusted (and recorded) only as p says.
func (hk *hostKeys) callback(ctx context.Context, p trustPolicy) ssh.HostKeyCallback {
	return func(addr string, remote net.Addr, key ssh.PublicKey) error {
		if p.pin != "" && fingerprint(key) != p.pin {
			return &HostKeyError{Reason: ErrHostKeyPinned, Host: addr, Key: key, Pin: p.pin}
		}
		err := hk.db(addr, remote, key)
		if err == nil {
			return nil
		}
		var revoked *knownhosts.RevokedError
		if errors.As(err, &revoked) {
			return &HostKeyError{Reason: ErrHostKeyRevoked, Host: addr, Key: key}
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return fmt.Errorf("check host key of %s: %w", addr, err)
		}
		if len(ke.Want) > 0 {
			return &HostKeyError{Reason: ErrHostKeyChanged, Host: addr, Key: key, Known: ke.Want}
		}
		switch {
		case p.pin != "", p.acceptNew:
		case p.ask != nil:
			ok, err := p.ask(ctx, addr, key)
			if err != nil {
				return fmt.Errorf("host key for %s: %w", addr, err)
			}
			if !ok {
				return &HostKeyError{Reason: ErrHostKeyUnknown, Host: addr, Key: key, Declined: true}
			}
		default:
			return &HostKeyError{Reason: ErrHostKeyUnknown, Host: addr, Key: key}
		}
		return hk.add(addr, key)
	}
}

// add appends addr's key to butter's known_hosts. The host name is
// written in the clear, not hashed: the same names are in butter's
// inventory beside it, so hashing would hide nothing, and plain lines let
// a person read the file and remove a stale entry by hand or with
// ssh-keygen -R.
func (hk *hostKeys) add(addr string, key ssh.PublicKey) error {
	if hk.record == "" {
		return nil
	}
	recordMu.Lock()
	defer recordMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(hk.record), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(hk.record, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("record host key in %s: %w", hk.record, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record host key in %s: %w", hk.record, err)
	}
	return nil
}

// normalizePin accepts "SHA256:…" or the bare base64.
func normalizePin(pin string) (string, error) {
	pin = strings.TrimSpace(pin)
	if pin == "" {
		return "", nil
	}
	if !strings.HasPrefix(pin, "SHA256:") {
		if strings.Contains(pin, ":") {
			return "", fmt.Errorf("host key %q: give its SHA256 fingerprint, SHA256:… as ssh-keygen -lf prints it", pin)
		}
		pin = "SHA256:" + pin
	}
	if len(pin) != len("SHA256:")+43 {
		return "", fmt.Errorf("host key %q: a SHA256 fingerprint has 43 characters after SHA256:", pin)
	}
	return pin, nil
}
