package testbed

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"testing"

	"golang.org/x/crypto/ssh"
)

// UserKey is a throwaway ed25519 key for a test's SSH client: the key a
// seed or an sshd authorizes, and the signer that logs in with it.
type UserKey struct {
	Private ed25519.PrivateKey
	Signer  ssh.Signer
}

// NewUserKey makes a UserKey, or fails the test.
func NewUserKey(t testing.TB) UserKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return UserKey{Private: priv, Signer: s}
}

// Authorized is the key's authorized_keys line, newline included.
func (k UserKey) Authorized() []byte { return ssh.MarshalAuthorizedKey(k.Signer.PublicKey()) }

// WriteIdentity writes the private key to path in OpenSSH's format, mode
// 0600, as an identity file for ssh(1) or the operator; it fails the test
// if it cannot.
func (k UserKey) WriteIdentity(t testing.TB, path string) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(k.Private, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}
