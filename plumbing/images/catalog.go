package images

import (
	"bufio"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// catalogImage is an official cloud image: a folder, the image's file name
// in it (%s is the architecture) and the checksum file published beside it.
type catalogImage struct {
	folder string // ends in "/"
	file   string // with one %s for the architecture
	sums   string // SHA256SUMS or SHA512SUMS
	algo   string // sha256 or sha512
	// sig is the detached signature of sums published beside it, checked
	// against the embedded keys (signed.go); empty where the distribution
	// signs nothing (Debian's cloud images, see signed.go).
	sig    string
	arches map[string]string
}

var catalog = map[string]catalogImage{
	"ubuntu-24.04": {
		folder: "https://cloud-images.ubuntu.com/releases/24.04/release/",
		file:   "ubuntu-24.04-server-cloudimg-%s.img",
		sums:   "SHA256SUMS",
		algo:   "sha256",
		sig:    "SHA256SUMS.gpg",
		arches: map[string]string{"amd64": "amd64", "arm64": "arm64"},
	},
	"debian-12": {
		folder: "https://cloud.debian.org/images/cloud/bookworm/latest/",
		file:   "debian-12-generic-%s.qcow2",
		sums:   "SHA512SUMS",
		algo:   "sha512",
		arches: map[string]string{"amd64": "amd64", "arm64": "arm64"},
	},
}

// catalogURLs gives where the image, its checksum file and the checksum
// file's signature (empty when the distribution publishes none) are for
// goarch. With a mirror, https://HOST/PATH becomes MIRROR/HOST/PATH: the
// layout `wget --mirror` leaves behind.
func catalogURLs(name, goarch, mirror string) (image, sums, sig, file string, err error) {
	c, ok := catalog[name]
	if !ok {
		return "", "", "", "", fmt.Errorf("unknown catalog image %q: known are %s", name, strings.Join(helperapi.CatalogNames(), ", "))
	}
	arch, ok := c.arches[goarch]
	if !ok {
		return "", "", "", "", fmt.Errorf("catalog image %s has no build for this machine's architecture %s", name, goarch)
	}
	folder := c.folder
	if mirror != "" {
		folder, err = mirrored(folder, mirror)
		if err != nil {
			return "", "", "", "", err
		}
	}
	file = fmt.Sprintf(c.file, arch)
	if c.sig != "" {
		sig = folder + c.sig
	}
	return folder + file, folder + c.sums, sig, file, nil
}

func mirrored(folder, mirror string) (string, error) {
	m, err := url.Parse(mirror)
	if err != nil {
		return "", fmt.Errorf("image mirror %q: %w", mirror, err)
	}
	if m.Scheme != "https" || m.Host == "" {
		// The checksum file comes from the mirror too; for an image whose
		// checksums are not signed (Debian's), only TLS stands between the
		// machine and a swapped image.
		return "", fmt.Errorf("image mirror %q: must be an https://HOST[/PATH] URL (the checksums come from it as well)", mirror)
	}
	u, err := url.Parse(folder)
	if err != nil {
		return "", fmt.Errorf("catalog folder %q: %w", folder, err)
	}
	return strings.TrimSuffix(mirror, "/") + "/" + u.Host + u.Path, nil
}

// maxSumsSize bounds a checksum file: the real ones are a few KiB.
const maxSumsSize = 1 << 20

// findSum reads a checksum file in the GNU coreutils form ("<hex>  name" or
// "<hex> *name" in binary mode) or the BSD tagged form
// ("SHA256 (name) = <hex>") and returns the digest listed for file.
func findSum(r io.Reader, algo, file string) (string, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxSumsSize))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var name, digest string
		if tag, rest, ok := strings.Cut(line, " ("); ok && strings.EqualFold(tag, algo) {
			n, d, ok := strings.Cut(rest, ") = ")
			if !ok {
				continue
			}
			name, digest = n, d
		} else {
			d, n, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			digest, name = d, strings.TrimPrefix(n, " ")
			name = strings.TrimPrefix(name, "*")
		}
		if strings.TrimPrefix(name, "./") != file {
			continue
		}
		c, err := helperapi.ParseChecksum(algo + ":" + digest)
		if err != nil {
			return "", fmt.Errorf("line for %s: %w", file, err)
		}
		return c.Hex, nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no line for %s", file)
}
