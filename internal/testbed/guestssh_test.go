package testbed

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestGuestHostKey(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	key, _ := ssh.NewPublicKey(pub)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	fp := ssh.FingerprintSHA256(key)
	console := func(keyLine, fpLine string) string {
		return "boot...\n-----BEGIN SSH HOST KEY FINGERPRINTS-----\n" + fpLine +
			"\n-----END SSH HOST KEY FINGERPRINTS-----\n-----BEGIN SSH HOST KEY KEYS-----\n" + keyLine +
			"\n-----END SSH HOST KEY KEYS-----\n"
	}
	got, err := GuestHostKey(console("[   12.3] random: crng "+line+" root@deb1", "256 "+fp+" root@deb1 (ED25519)"))
	if err != nil || ssh.FingerprintSHA256(got) != fp {
		t.Fatalf("key sharing a line with a kernel message: %v, %v", got, err)
	}
	if _, err := GuestHostKey(console(line, "256 SHA256:somethingelse root@deb1 (ED25519)")); err == nil ||
		!strings.Contains(err.Error(), "not among the fingerprints") {
		t.Errorf("a key whose fingerprint was not printed: %v", err)
	}
	if _, err := GuestHostKey("no keys here"); err == nil {
		t.Error("a console without keys gave a key")
	}
}
