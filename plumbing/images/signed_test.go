package images

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/butter-cloud/butter/helperapi"
)

var (
	signers   = map[string]*openpgp.Entity{}
	signersMu sync.Mutex
)

// namedSigner is a throwaway ed25519 OpenPGP key, one per name for the
// whole test binary (key generation is the slow part).
func namedSigner(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	signersMu.Lock()
	defer signersMu.Unlock()
	if e, ok := signers[name]; ok {
		return e
	}
	e, err := openpgp.NewEntity(name, "butter test", name+"@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	signers[name] = e
	return e
}

// testSigner is the key test stores trust in place of the embedded ones.
func testSigner(t *testing.T) *openpgp.Entity { return namedSigner(t, "Test Image Signing Key") }

// detachSign signs data as a distribution does: a detached signature,
// binary (Ubuntu's SHA256SUMS.gpg) or armored.
func detachSign(t *testing.T, e *openpgp.Entity, data []byte, armored bool) []byte {
	t.Helper()
	var b bytes.Buffer
	sign := openpgp.DetachSign
	if armored {
		sign = openpgp.ArmoredDetachSign
	}
	if err := sign(&b, e, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The embedded keys are the trust anchor for catalog images; changing
// them must be a deliberate edit here. The fingerprint is the one Ubuntu
// documents for its cloud images' SHA256SUMS.gpg (see signed.go).
func TestEmbeddedKeys(t *testing.T) {
	keyring, err := EmbeddedKeyring()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range keyring {
		got = append(got, fmt.Sprintf("%X %s", e.PrimaryKey.Fingerprint, describeKey(e)))
		if e.Revoked(e.PrimaryKey.CreationTime) {
			t.Errorf("key %X is revoked", e.PrimaryKey.Fingerprint)
		}
		if len(e.Identities) == 0 {
			t.Errorf("key %X has no valid identity (its self-signature did not verify)", e.PrimaryKey.Fingerprint)
		}
	}
	want := []string{"D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81 UEC Image Automatic Signing Key <cdimage@ubuntu.com> (D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("embedded keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The production path uses them: a store without a Keyring refuses a
	// checksum file signed by anyone else, naming the key it trusts.
	sums := []byte(hex64 + " *x.img\n")
	if _, err := verifySums(keyring, sums, detachSign(t, testSigner(t), sums, false)); err == nil || !strings.Contains(err.Error(), "UEC Image Automatic Signing Key") {
		t.Fatalf("verifySums with the embedded keys = %v, want a refusal naming Ubuntu's key", err)
	}
}

// TestCatalogSignature serves an Ubuntu catalog image whose SHA256SUMS is
// signed (or not) in the ways a mirror could get it wrong; only a good
// signature by a trusted key over the very checksum file lets the image in.
func TestCatalogSignature(t *testing.T) {
	good := fakeQCOW2(200 * 1024)
	const src = "ubuntu-24.04"
	tests := []struct {
		name string
		// edit changes what addCatalog served: sums is the signed file, sig
		// its signature path.
		edit    func(t *testing.T, f *fakeServer, sums, sigPath string)
		wantErr []string
		// fetched: whether the image itself may be downloaded.
		fetched bool
	}{
		{name: "good binary signature", fetched: true},
		{name: "good armored signature", fetched: true, edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			f.put(sigPath, detachSign(t, testSigner(t), f.files[sums], true))
		}},
		{name: "tampered checksum file", edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			f.put(sums, bytes.Replace(f.files[sums], []byte(sha256Hex(good)[:8]), []byte("00000000"), 1))
		}, wantErr: []string{"catalog image ubuntu-24.04", "SHA256SUMS", "SHA256SUMS.gpg", "bad signature", "nothing was downloaded"}},
		{name: "wrong key", edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			f.put(sigPath, detachSign(t, namedSigner(t, "Mallory"), f.files[sums], false))
		}, wantErr: []string{"signed by a key butter does not trust", "Test Image Signing Key", "nothing was downloaded"}},
		{name: "missing signature", edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			delete(f.files, sigPath)
		}, wantErr: []string{"the checksum file's signature", "SHA256SUMS.gpg: server answered 404", "nothing was downloaded"}},
		{name: "empty signature", edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			f.put(sigPath, nil)
		}, wantErr: []string{"the signature file is empty"}},
		{name: "garbage signature", edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			f.put(sigPath, []byte("this is not a signature\n"))
		}, wantErr: []string{"bad signature"}},
		{name: "image does not match the signed checksum", fetched: true, edit: func(t *testing.T, f *fakeServer, sums, sigPath string) {
			// The mirror serves other bytes under the image's name; the
			// checksum file and its signature are the publisher's.
			imagePath := strings.TrimSuffix(sigPath, "SHA256SUMS.gpg") + "ubuntu-24.04-server-cloudimg-amd64.img"
			f.put(imagePath, fakeQCOW2(100*1024))
		}, wantErr: []string{"sha256 mismatch for ubuntu-24.04-server-cloudimg-amd64.img", "expected " + sha256Hex(good), "nothing was cached"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			imagePath, sumsPath := f.addCatalog(t, src, "amd64", good, good)
			sigPath := sumsPath + ".gpg"
			if tt.edit != nil {
				tt.edit(t, f, sumsPath, sigPath) // before any request: f.files is not shared yet
			}
			s := newStore(t, f, "")
			img, err := s.Ensure(t.Context(), helperapi.Source{Catalog: src}, nil)
			if got := f.hitsOn(imagePath) > 0; got != tt.fetched {
				t.Errorf("image downloaded: %v, want %v (nothing may be fetched before the checksums verify)", got, tt.fetched)
			}
			if len(tt.wantErr) > 0 {
				wantRefused(t, s, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			for _, w := range []string{"sha256:" + sha256Hex(good), "SHA256SUMS", "signed by Test Image Signing Key"} {
				if !strings.Contains(img.Verified, w) {
					t.Errorf("Verified = %q, want it to contain %q", img.Verified, w)
				}
			}
		})
	}
}

// Debian signs nothing for its cloud images: the image is still checked
// against SHA512SUMS, and the record says that file was not signed.
func TestCatalogUnsignedSaysSo(t *testing.T) {
	f := newFakeServer(t)
	content := fakeQCOW2(50 * 1024)
	f.addCatalog(t, "debian-12", "amd64", content, content)
	s := newStore(t, f, "")
	img, err := s.Ensure(t.Context(), helperapi.Source{Catalog: "debian-12"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(img.Verified, "unsigned") || strings.Contains(img.Verified, "signed by") {
		t.Errorf("Verified = %q, want it to say the checksum file is unsigned", img.Verified)
	}
}

func TestVerifySums(t *testing.T) {
	sums := []byte(fmt.Sprintf("%x *x.img\n", sha256.Sum256([]byte("x"))))
	trusted := openpgp.EntityList{testSigner(t)}
	tests := []struct {
		name    string
		keyring openpgp.EntityList
		sums    []byte
		sig     []byte
		wantErr string
	}{
		{"binary", trusted, sums, detachSign(t, testSigner(t), sums, false), ""},
		{"armored", trusted, sums, detachSign(t, testSigner(t), sums, true), ""},
		{"one more byte", trusted, append(bytes.Clone(sums), '\n'), detachSign(t, testSigner(t), sums, false), "bad signature"},
		{"other key", trusted, sums, detachSign(t, namedSigner(t, "Mallory"), sums, false), "does not trust (trusted: Test Image Signing Key"},
		{"empty keyring", nil, sums, detachSign(t, testSigner(t), sums, false), "trusted: none"},
		{"empty", trusted, sums, []byte("\n"), "the signature file is empty"},
		{"armored junk", trusted, sums, []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"), "bad signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signer, err := verifySums(tt.keyring, tt.sums, tt.sig)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("verifySums = %q, %v; want an error containing %q", signer, err, tt.wantErr)
				}
				return
			}
			if err != nil || !strings.HasPrefix(signer, "Test Image Signing Key") {
				t.Fatalf("verifySums = %q, %v; want the test key", signer, err)
			}
		})
	}
}
