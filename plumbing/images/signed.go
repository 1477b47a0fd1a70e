package images

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
)

// ubuntuCloudImageKey is Ubuntu's "UEC Image Automatic Signing Key
// <cdimage@ubuntu.com>", rsa4096 made 2009-09-15, fingerprint
// D2EB 4462 6FDD C30B 513D 5BB7 1A5D 6C4C 7DB8 7C81: the key that signs
// cloud-images.ubuntu.com's SHA256SUMS (SHA256SUMS.gpg). The fingerprint is
// the one Ubuntu's "verify image checksum" guide for its public cloud
// images names and the one gpg prints for that file's signature; the key
// block is keyserver.ubuntu.com's export of it (the copy the ubuntu-keyring
// package ships as ubuntu-cloudimage-keyring.gpg). TestEmbeddedKeys pins the
// fingerprint: changing the key must be a deliberate edit there too.
//
// Debian has no such key: its current cloud images (cloud.debian.org
// /images/cloud/<release>/) publish SHA512SUMS without a signature; the
// folder's own page says to fetch image and checksums over TLS from
// cloud.debian.org, and that only the legacy OpenStack/ images are signed.
// The Debian CD signing keys (debian.org/CD/verify) sign installer images,
// not these. So debian-12 is checked against SHA512SUMS over TLS only, and
// the image record says so.
//
//go:embed keys/ubuntu-cloudimage.asc
var ubuntuCloudImageKey []byte

var (
	embeddedOnce sync.Once
	embedded     openpgp.EntityList
	embeddedErr  error
)

// EmbeddedKeyring is the keys catalog checksum files must be signed by:
// the distributions' image signing keys built into the binary.
func EmbeddedKeyring() (openpgp.EntityList, error) {
	embeddedOnce.Do(func() {
		embedded, embeddedErr = openpgp.ReadArmoredKeyRing(bytes.NewReader(ubuntuCloudImageKey))
		if embeddedErr != nil {
			embeddedErr = fmt.Errorf("the built-in image signing keys: %w", embeddedErr)
		}
	})
	return embedded, embeddedErr
}

// verifySums checks sig, a detached OpenPGP signature (binary, as Ubuntu
// publishes it, or ASCII-armored), over sums against keyring and returns a
// description of the signer for the image record.
func verifySums(keyring openpgp.EntityList, sums, sig []byte) (string, error) {
	if len(bytes.TrimSpace(sig)) == 0 {
		return "", errors.New("the signature file is empty")
	}
	var signer *openpgp.Entity
	var err error
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN PGP SIGNATURE-----")) {
		signer, err = openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(sums), bytes.NewReader(sig), nil)
	} else {
		signer, err = openpgp.CheckDetachedSignature(keyring, bytes.NewReader(sums), bytes.NewReader(sig), nil)
	}
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return "", fmt.Errorf("signed by a key butter does not trust (trusted: %s)", describeKeys(keyring))
	case err != nil:
		return "", fmt.Errorf("bad signature (the file was changed after signing, or the signature is not one): %w", err)
	}
	return describeKey(signer), nil
}

func describeKey(e *openpgp.Entity) string {
	name := ""
	for n := range e.Identities {
		if name == "" || n < name {
			name = n
		}
	}
	return fmt.Sprintf("%s (%X)", name, e.PrimaryKey.Fingerprint)
}

func describeKeys(keyring openpgp.EntityList) string {
	var ds []string
	for _, e := range keyring {
		ds = append(ds, describeKey(e))
	}
	if len(ds) == 0 {
		return "none"
	}
	return strings.Join(ds, ", ")
}
