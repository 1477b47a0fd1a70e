package helperapi

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// PrivateKey is an SSH private key in OpenSSH's PEM form: a VM's host key
// on its way into the VM's seed. It prints as a placeholder, so that a
// request written to a log or an error never shows it.
type PrivateKey string

// String hides the key.
func (k PrivateKey) String() string {
	if k == "" {
		return ""
	}
	return "(private key)"
}

// GoString hides the key from %#v too.
func (k PrivateKey) GoString() string { return k.String() }

// NewHostKey makes an ed25519 SSH host key: the private half for the
// VM's seed, the public half for the operator's known_hosts.
func NewHostKey() (PrivateKey, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, fmt.Errorf("make a host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", nil, fmt.Errorf("make a host key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", nil, fmt.Errorf("make a host key: %w", err)
	}
	return PrivateKey(pem.EncodeToMemory(block)), sshPub, nil
}

// errHostKey never quotes the key: it is a secret.
var errHostKey = errors.New("host key: not an unencrypted ed25519 private key in OpenSSH's PEM form (as ssh-keygen -t ed25519 writes it)")

// PublicKey checks that k is an unencrypted ed25519 private key and
// returns its public half. Its error never quotes the key.
func (k PrivateKey) PublicKey() (ssh.PublicKey, error) {
	raw, err := ssh.ParseRawPrivateKey([]byte(k))
	if err != nil {
		return nil, errHostKey
	}
	priv, ok := raw.(*ed25519.PrivateKey)
	if !ok {
		return nil, errHostKey
	}
	return ssh.NewPublicKey(priv.Public())
}
