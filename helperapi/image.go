package helperapi

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// Source says where an image comes from. Exactly one of Catalog, URL, File
// and Kernel is set.
type Source struct {
	// Catalog is a name from the built-in catalog (see CatalogNames): an
	// official cloud image the machine downloads itself and checks against
	// the checksum file published beside it.
	Catalog string `json:"catalog,omitempty"`
	// URL is an https (or, with a Checksum, http) address of a disk image.
	URL string `json:"url,omitempty"`
	// Checksum pins the content behind URL. An https URL without one is
	// refused unless InsecureNoChecksum says TLS alone is trusted.
	Checksum Checksum `json:"checksum,omitzero"`
	// InsecureNoChecksum takes an https URL's content on TLS's word
	// (--insecure-no-checksum; ",insecure-no-checksum" in the text form).
	InsecureNoChecksum bool `json:"insecureNoChecksum,omitempty"`
	// File is a disk image on the operator's computer, uploaded over the
	// operator's connection.
	File *File `json:"file,omitempty"`
	// Kernel is a kernel on the operator's computer for direct kernel boot;
	// Initrd and Cmdline go with it.
	Kernel *File `json:"kernel,omitempty"`
	// Initrd is the initial ramdisk for Kernel; it may be nil.
	Initrd *File `json:"initrd,omitempty"`
	// Cmdline is the kernel command line for Kernel.
	Cmdline string `json:"cmdline,omitempty"`
}

// File is one file uploaded from the operator's computer. ParseSource fills
// Path; the transport that carries the bytes fills Size, SHA256 and Body
// (Files lists the ones it has to fill).
type File struct {
	// Path is where the file is on the operator's computer; only its base
	// name is kept, for display.
	Path string `json:"path"`
	// Size is the file's length in bytes, as the operator measured it.
	Size int64 `json:"size"`
	// SHA256 is the hex sha256 of the content, as the operator computed it.
	SHA256 string `json:"sha256"`
	// Body streams the content. It is read at most once, and not at all
	// when the store already holds content with this SHA256.
	Body io.Reader `json:"-"`
}

// Checksum is an expected digest: Algo is "sha256" or "sha512", Hex the
// lower-case hex digest. The zero Checksum means "none given".
type Checksum struct {
	Algo string `json:"algo"`
	Hex  string `json:"hex"`
}

// IsZero reports whether no checksum is set.
func (c Checksum) IsZero() bool { return c == Checksum{} }

// String is the "algo:hex" form ParseChecksum reads.
func (c Checksum) String() string {
	if c.IsZero() {
		return ""
	}
	return c.Algo + ":" + c.Hex
}

var hexLen = map[string]int{"sha256": 64, "sha512": 128}

// ParseChecksum reads "sha256:<hex>" or "sha512:<hex>".
func ParseChecksum(s string) (Checksum, error) {
	algo, digest, ok := strings.Cut(s, ":")
	algo = strings.ToLower(algo)
	n, known := hexLen[algo]
	if !ok || !known {
		return Checksum{}, fmt.Errorf("checksum %q: write sha256:<hex> or sha512:<hex>", s)
	}
	digest = strings.ToLower(digest)
	if len(digest) != n {
		return Checksum{}, fmt.Errorf("checksum %q: %s needs %d hex digits, got %d", s, algo, n, len(digest))
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return Checksum{}, fmt.Errorf("checksum %q: not hex: %w", s, err)
	}
	return Checksum{Algo: algo, Hex: digest}, nil
}

// ParseSource reads the command-line form of a source:
//
//	ubuntu-24.04                          a catalog name (see CatalogNames)
//	https://host/disk.img,checksum=sha256:<hex>   an image on the web, pinned
//	https://host/disk.qcow2,insecure-no-checksum  … trusted through TLS alone
//	http://host/disk.img,checksum=sha512:<hex>    plain http needs a checksum
//	./disk.qcow2, /abs/disk.img, file=disk.img    a file on this computer
//	kernel=PATH,initrd=PATH[,cmdline=ARGS]        direct kernel boot
//
// cmdline must come last: it takes the rest of the text, commas included
// (console=ttyS0,115200). A bare word is a catalog name; write ./NAME for a
// file in the current folder.
func ParseSource(s string) (Source, error) {
	s = strings.TrimSpace(s)
	var src Source
	switch {
	case s == "":
		return Source{}, fmt.Errorf("empty image source: give a catalog name (%s), an https URL, a file path or kernel=PATH,initrd=PATH", strings.Join(CatalogNames(), ", "))
	case strings.HasPrefix(s, "kernel=") || strings.HasPrefix(s, "initrd="):
		k, err := parseKernel(s)
		if err != nil {
			return Source{}, err
		}
		src = k
	case strings.HasPrefix(s, "file="):
		src.File = &File{Path: strings.TrimPrefix(s, "file=")}
	case hasScheme(s):
		s, src.InsecureNoChecksum = strings.CutSuffix(s, InsecureNoChecksumSuffix)
		u, sum, hasSum := strings.Cut(s, ",checksum=")
		src.URL = u
		if hasSum {
			c, err := ParseChecksum(sum)
			if err != nil {
				return Source{}, fmt.Errorf("image %s: %w", u, err)
			}
			src.Checksum = c
		}
	case strings.ContainsAny(s, `/\`):
		src.File = &File{Path: s}
	default:
		src.Catalog = s
	}
	if err := src.Validate(); err != nil {
		return Source{}, err
	}
	return src, nil
}

// InsecureNoChecksumSuffix ends the text form of a URL source that is
// trusted through TLS alone.
const InsecureNoChecksumSuffix = ",insecure-no-checksum"

func hasScheme(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && scheme != "" && !strings.ContainsAny(scheme, `/\.`)
}

func parseKernel(s string) (Source, error) {
	rest, cmdline, hasCmdline := strings.Cut(s, ",cmdline=")
	src := Source{Cmdline: cmdline}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(part, "=")
		if v == "" {
			return Source{}, fmt.Errorf("kernel boot %q: %q needs a path, as in kernel=PATH,initrd=PATH[,cmdline=ARGS]", s, part)
		}
		f := &File{Path: v}
		switch k {
		case "kernel":
			if src.Kernel != nil {
				return Source{}, fmt.Errorf("kernel boot %q: kernel= given twice", s)
			}
			src.Kernel = f
		case "initrd":
			if src.Initrd != nil {
				return Source{}, fmt.Errorf("kernel boot %q: initrd= given twice", s)
			}
			src.Initrd = f
		case "cmdline":
			return Source{}, fmt.Errorf("kernel boot %q: cmdline= must come last", s)
		default:
			return Source{}, fmt.Errorf("kernel boot %q: unknown key %q; use kernel=PATH,initrd=PATH[,cmdline=ARGS]", s, k)
		}
	}
	if hasCmdline && cmdline == "" {
		return Source{}, fmt.Errorf("kernel boot %q: cmdline= is empty; drop it or give the arguments", s)
	}
	return src, nil
}

// Validate checks that exactly one kind of source is set and that it is
// well formed. It does not need the upload's data (see Files).
func (s Source) Validate() error {
	kinds := 0
	for _, set := range []bool{s.Catalog != "", s.URL != "", s.File != nil, s.Kernel != nil || s.Initrd != nil || s.Cmdline != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds == 0:
		return errors.New("image source is empty: set one of catalog, URL, file or kernel")
	case kinds > 1:
		return fmt.Errorf("image source %s: set only one of catalog, URL, file or kernel", s)
	case !s.Checksum.IsZero() && s.URL == "":
		return fmt.Errorf("image source %s: a checksum goes only with a URL", s)
	case s.InsecureNoChecksum && s.URL == "":
		return fmt.Errorf("image source %s: --insecure-no-checksum goes only with a URL", s)
	case s.InsecureNoChecksum && !s.Checksum.IsZero():
		return fmt.Errorf("image %s: give a checksum or --insecure-no-checksum, not both", s.URL)
	case s.Catalog != "":
		if !slices.Contains(CatalogNames(), s.Catalog) {
			return fmt.Errorf("unknown catalog image %q: known are %s (for a file in this folder write ./%s)",
				s.Catalog, strings.Join(CatalogNames(), ", "), s.Catalog)
		}
	case s.URL != "":
		if !s.Checksum.IsZero() {
			c, err := ParseChecksum(s.Checksum.String())
			if err != nil {
				return fmt.Errorf("image %s: %w", s.URL, err)
			}
			if c != s.Checksum {
				return fmt.Errorf("image %s: checksum %s: write the hex digits in lower case (ParseChecksum does)", s.URL, s.Checksum)
			}
		}
		return validateURL(s.URL, s.Checksum, s.InsecureNoChecksum)
	case s.File != nil:
		if s.File.Path == "" {
			return errors.New("image file: the path is empty")
		}
	default:
		if s.Kernel == nil || s.Kernel.Path == "" {
			return fmt.Errorf("kernel boot %s: kernel=PATH is missing", s)
		}
		if s.Initrd != nil && s.Initrd.Path == "" {
			return fmt.Errorf("kernel boot %s: initrd has an empty path", s)
		}
	}
	return nil
}

func validateURL(raw string, sum Checksum, insecure bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("image URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme == "http" && sum.IsZero():
		return fmt.Errorf("image URL %s: plain http is refused without a checksum; use https, or add ,checksum=sha256:<hex>", raw)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("image URL %s: scheme %q is not supported; use https (or http with a checksum)", raw, u.Scheme)
	case u.Host == "":
		return fmt.Errorf("image URL %s: no host; write https://HOST/PATH", raw)
	case path.Base(u.Path) == "/" || path.Base(u.Path) == ".":
		return fmt.Errorf("image URL %s: no file name in the path", raw)
	case sum.IsZero() && !insecure:
		// TLS only says who served the bytes, not that they are the
		// image meant: a compromised or careless server swaps it.
		return fmt.Errorf("image URL %s: no checksum vouches for it; add ,checksum=sha256:<hex> (the publisher's), or trust the server's TLS alone with --insecure-no-checksum (,insecure-no-checksum in a form)", raw)
	}
	return nil
}

// Files lists the files the transport has to upload for s (none for a
// catalog name or URL), so it can fill their Size, SHA256 and Body.
func (s Source) Files() []*File {
	var fs []*File
	for _, f := range []*File{s.File, s.Kernel, s.Initrd} {
		if f != nil {
			fs = append(fs, f)
		}
	}
	return fs
}

// String gives the command-line form of s (the one ParseSource reads).
func (s Source) String() string {
	switch {
	case s.Catalog != "":
		return s.Catalog
	case s.URL != "":
		if !s.Checksum.IsZero() {
			return s.URL + ",checksum=" + s.Checksum.String()
		}
		if s.InsecureNoChecksum {
			return s.URL + InsecureNoChecksumSuffix
		}
		return s.URL
	case s.File != nil:
		if strings.ContainsAny(s.File.Path, `/\`) {
			return s.File.Path
		}
		return "file=" + s.File.Path
	}
	var parts []string
	if s.Kernel != nil {
		parts = append(parts, "kernel="+s.Kernel.Path)
	}
	if s.Initrd != nil {
		parts = append(parts, "initrd="+s.Initrd.Path)
	}
	if s.Cmdline != "" {
		parts = append(parts, "cmdline="+s.Cmdline)
	}
	return strings.Join(parts, ",")
}

// CatalogNames lists the names a Source's Catalog may take, sorted: the
// official cloud images every helper knows where to fetch.
func CatalogNames() []string { return []string{"debian-12", "ubuntu-24.04"} }

// Kinds of blob a kernel boot image is uploaded as.
const (
	BlobKernel = "kernel"
	BlobInitrd = "initrd"
)

// Format is a disk image's on-disk format, as libvirt names it.
type Format string

// Formats a cached disk image can have.
const (
	FormatQCOW2 Format = "qcow2"
	FormatRaw   Format = "raw"
)

// Phase is what an image transfer is doing.
type Phase string

// Phases reported through Progress.
const (
	PhaseWait     Phase = "wait"     // another call is fetching the same source
	PhaseDownload Phase = "download" // the machine downloads from the web
	PhaseUpload   Phase = "upload"   // the operator's file streams in
	PhaseVerify   Phase = "verify"   // flushing to disk and comparing checksums
)

// Progress is one report of an image transfer. Within one Name and Phase,
// Done never goes down. Reports come at most every 100 ms, plus the first
// and the last of each phase.
type Progress struct {
	// Name is the file being moved: the image's name, or the kernel's or
	// initrd's for kernel boot.
	Name  string
	Phase Phase
	Done  int64
	// Total is the expected size, or -1 when the server did not say.
	Total int64
}

// Image is one cached image: a disk image, or a kernel (with an initrd and
// a command line) for direct kernel boot.
type Image struct {
	// ID names the image: the sha256 of a disk image's content, or for
	// kernel boot the sha256 of the kernel's and initrd's digests and the
	// command line.
	ID string `json:"id"`
	// Name is for people: the catalog name or the file's name.
	Name string `json:"name"`
	// Sources are the sources that resolved to this image, in the form
	// ParseSource reads (a catalog name followed by /ARCH).
	Sources []string `json:"sources"`
	// Format is a disk image's format; empty for kernel boot.
	Format Format `json:"format,omitempty"`
	// Disk is the base image file; nil for kernel boot.
	Disk *Blob `json:"disk,omitempty"`
	// Kernel, Initrd and Cmdline are for kernel boot; Initrd may be nil.
	Kernel  *Blob  `json:"kernel,omitempty"`
	Initrd  *Blob  `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// Verified says what the content was checked against when fetched
	// ("sha512:… from SHA512SUMS at …"); empty when nothing was given (an
	// https URL without a checksum).
	Verified string `json:"verified,omitempty"`
	// Fetched is when the content was first cached.
	Fetched time.Time `json:"fetched"`
}

// Blob is one cached file.
type Blob struct {
	// File is the name inside the store's folder, which is also the
	// volume's name in the libvirt pool over that folder.
	File string `json:"file"`
	// Path is the file's absolute path (filled in by the store).
	Path   string `json:"-"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// CatalogUser is the default login user of a catalog image's cloud-init
// (the account the seed's SSH keys are given to); "" for any other image.
func CatalogUser(image string) string {
	switch image {
	case "debian-12":
		return "debian"
	case "ubuntu-24.04":
		return "ubuntu"
	}
	return ""
}
