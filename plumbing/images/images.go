// Package images keeps the machine's cache of VM images: base disk images
// (which VM disks are qcow2 overlays over) and kernels for direct kernel
// boot, each fetched once and stored under its content hash.
//
// Images come from the built-in catalog of official cloud images (checked
// against the checksum file published beside them), from a URL, or from the
// operator's computer over the operator's connection. Everything is written
// to a temporary file in the store's folder while it is hashed, synced,
// verified, and only then renamed into place, so the folder never holds a
// partial or unverified image under a final name.
//
// The folder is also a libvirt "dir" storage pool: base-<sha256>.<format>,
// kernel-<sha256> and initrd-<sha256> are its volumes. Beside them sit
// index.json (source → content), .locks/ and, while something is being
// fetched, .partial-* files.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/butter-cloud/butter/helperapi"
)

// DefaultDir is where the helper keeps images unless told otherwise.
const DefaultDir = "/var/lib/butter/images"

// DefaultStallTimeout ends a download that has received nothing for this
// long.
const DefaultStallTimeout = 2 * time.Minute

// DefaultMaxImageSize is the largest image file a Store takes unless told
// otherwise: cloud images are well under 1 GiB, a raw disk a few GiB.
const DefaultMaxImageSize = 32 << 30

// Store is the image cache in one folder. Its exported fields are settings;
// set them before the first call. Several Stores (and processes) may share
// a folder: they coordinate through lock files in it.
type Store struct {
	// Dir is the folder; DefaultDir if empty.
	Dir string
	// Mirror replaces the catalog's servers: https://HOST/PATH is fetched
	// from MIRROR/HOST/PATH instead (the layout `wget --mirror` leaves),
	// checksum files and their signatures included. It must be https.
	Mirror string
	// Keyring holds the keys a catalog checksum file must be signed by
	// (where the distribution signs it); EmbeddedKeyring if nil.
	Keyring openpgp.EntityList
	// Client makes the HTTP requests; http.DefaultClient if nil. Give one
	// with its own root CAs for a mirror with a private certificate.
	Client *http.Client
	// Arch picks the catalog's build (a GOARCH); runtime.GOARCH if empty.
	Arch string
	// StallTimeout ends a download that receives nothing for this long;
	// DefaultStallTimeout if zero.
	StallTimeout time.Duration
	// MaxImageSize bounds one downloaded or uploaded file, checked while
	// it streams (a server that sends no length, or lies about it, stops
	// there and its partial file is removed); DefaultMaxImageSize if zero.
	MaxImageSize int64

	mu    sync.Mutex
	keys  map[string]chan struct{} // one per source being fetched
	idxMu sync.Mutex
	clean sync.Once
}

// New returns a store over dir (DefaultDir if empty).
func New(dir string) *Store {
	return &Store{Dir: dir}
}

func (s *Store) dir() string {
	if s.Dir == "" {
		return DefaultDir
	}
	return s.Dir
}

func (s *Store) arch() string {
	if s.Arch == "" {
		return runtime.GOARCH
	}
	return s.Arch
}

// staleAfter is how long a temporary file may go unwritten before the
// store takes it for the leftover of a crashed process.
const staleAfter = 24 * time.Hour

func (s *Store) prepare() error {
	if err := os.MkdirAll(filepath.Join(s.dir(), ".locks"), 0o755); err != nil {
		return fmt.Errorf("make image folder: %w", err)
	}
	s.clean.Do(func() {
		old, _ := filepath.Glob(filepath.Join(s.dir(), partialPrefix+"*"))
		for _, p := range old {
			if fi, err := os.Stat(p); err == nil && time.Since(fi.ModTime()) > staleAfter {
				os.Remove(p)
			}
		}
	})
	return nil
}

// Ensure returns the cached image for src, fetching it first if it is not
// cached: downloading it (a catalog name or URL) or reading the upload's
// Body. A catalog name is pinned to what it resolved to when first
// fetched, so once cached it resolves without the network; Remove it to
// fetch the current release.
//
// Calls for the same source, in this process or another, fetch once: the
// later ones wait (reporting PhaseWait) and then find it cached. progress,
// if not nil, is called from the calling goroutine and should return
// quickly. If ctx ends, the fetch stops and leaves nothing behind.
func (s *Store) Ensure(ctx context.Context, src helperapi.Source, progress func(helperapi.Progress)) (helperapi.Image, error) {
	if err := src.Validate(); err != nil {
		return helperapi.Image{}, err
	}
	if err := s.prepare(); err != nil {
		return helperapi.Image{}, err
	}
	plan, err := s.plan(src)
	if err != nil {
		return helperapi.Image{}, err
	}
	img, err := s.ensure(ctx, plan, progress)
	if err != nil {
		return helperapi.Image{}, fmt.Errorf("image %s: %w", src, err)
	}
	return img, nil
}

// Lookup returns the cached image for src without fetching anything; the
// transport can use it to skip an upload. An upload's SHA256 must be set,
// its Body need not be.
func (s *Store) Lookup(ctx context.Context, src helperapi.Source) (helperapi.Image, bool, error) {
	if err := src.Validate(); err != nil {
		return helperapi.Image{}, false, err
	}
	if err := s.prepare(); err != nil {
		return helperapi.Image{}, false, err
	}
	plan, err := s.plan(src)
	if err != nil {
		return helperapi.Image{}, false, err
	}
	return s.lookup(ctx, plan.match)
}

// plan is how to find and fetch one source.
type plan struct {
	key   string // names the source, for locks and the index
	name  string
	match func(helperapi.Image) bool
	fetch func(ctx context.Context, progress func(helperapi.Progress)) (helperapi.Image, error)
}

func (s *Store) plan(src helperapi.Source) (plan, error) {
	switch {
	case src.Catalog != "":
		key := src.Catalog + "/" + s.arch()
		return plan{
			key:   key,
			name:  src.Catalog,
			match: func(img helperapi.Image) bool { return slices.Contains(img.Sources, key) },
			fetch: func(ctx context.Context, progress func(helperapi.Progress)) (helperapi.Image, error) {
				return s.fetchCatalog(ctx, src.Catalog, key, progress)
			},
		}, nil
	case src.URL != "":
		key := src.String()
		sum := src.Checksum
		return plan{
			key:  key,
			name: sourceName(src),
			match: func(img helperapi.Image) bool {
				return slices.Contains(img.Sources, key) ||
					sum.Algo == "sha256" && img.Disk != nil && img.Disk.SHA256 == sum.Hex
			},
			fetch: func(ctx context.Context, progress func(helperapi.Progress)) (helperapi.Image, error) {
				return s.fetchURL(ctx, src, key, progress)
			},
		}, nil
	case src.File != nil:
		f := *src.File
		f.SHA256 = strings.ToLower(f.SHA256)
		if _, err := helperapi.ParseChecksum("sha256:" + f.SHA256); err != nil {
			return plan{}, fmt.Errorf("upload image %s: %w", f.Path, err)
		}
		return plan{
			key:   "sha256:" + f.SHA256,
			name:  sourceName(src),
			match: func(img helperapi.Image) bool { return img.Disk != nil && img.Disk.SHA256 == f.SHA256 },
			fetch: func(ctx context.Context, progress func(helperapi.Progress)) (helperapi.Image, error) {
				return s.fetchUpload(ctx, &f, progress)
			},
		}, nil
	}
	var files [2]*helperapi.File
	for i, f := range []*helperapi.File{src.Kernel, src.Initrd} {
		if f == nil {
			continue
		}
		c := *f
		c.SHA256 = strings.ToLower(c.SHA256)
		if _, err := helperapi.ParseChecksum("sha256:" + c.SHA256); err != nil {
			return plan{}, fmt.Errorf("upload %s %s: %w", []string{"kernel", "initrd"}[i], f.Path, err)
		}
		files[i] = &c
	}
	id := kernelID(files[0], files[1], src.Cmdline)
	// Operators' paths differ; the sources record only the files' names.
	shown := helperapi.Source{Kernel: &helperapi.File{Path: baseName(files[0].Path)}, Cmdline: src.Cmdline}
	if files[1] != nil {
		shown.Initrd = &helperapi.File{Path: baseName(files[1].Path)}
	}
	return plan{
		key:   "kernel:" + id,
		name:  sourceName(src),
		match: func(img helperapi.Image) bool { return img.ID == id },
		fetch: func(ctx context.Context, progress func(helperapi.Progress)) (helperapi.Image, error) {
			return s.fetchKernel(ctx, id, shown.String(), files[0], files[1], src.Cmdline, progress)
		},
	}, nil
}

// kernelID names a kernel boot image by what it is made of.
func kernelID(kernel, initrd *helperapi.File, cmdline string) string {
	h := sha256.New()
	fmt.Fprintf(h, "kernel %s\n", kernel.SHA256)
	if initrd != nil {
		fmt.Fprintf(h, "initrd %s\n", initrd.SHA256)
	}
	fmt.Fprintf(h, "cmdline %s\n", cmdline)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Store) ensure(ctx context.Context, p plan, progress func(helperapi.Progress)) (helperapi.Image, error) {
	if img, ok, err := s.lookup(ctx, p.match); err != nil || ok {
		return img, err
	}
	unlock, err := s.lockKey(ctx, p.key, p.name, progress)
	if err != nil {
		return helperapi.Image{}, err
	}
	defer unlock()
	// Whoever held the lock may have fetched it meanwhile.
	if img, ok, err := s.lookup(ctx, p.match); err != nil || ok {
		return img, err
	}
	img, err := p.fetch(ctx, progress)
	if err != nil {
		return helperapi.Image{}, err
	}
	// The files are in place: record them even if ctx has just ended.
	err = s.withIndex(context.WithoutCancel(ctx), func(ix *index) (bool, error) {
		img = ix.put(img)
		return true, nil
	})
	if err != nil {
		return helperapi.Image{}, err
	}
	return s.withPaths(img), nil
}

func (s *Store) lookup(ctx context.Context, match func(helperapi.Image) bool) (img helperapi.Image, ok bool, err error) {
	err = s.withIndex(ctx, func(ix *index) (bool, error) {
		img, ok = s.find(ix, match)
		return false, nil
	})
	return img, ok, err
}

// lockKey serializes fetches of one source: within the process through a
// channel, across processes through a lock file.
func (s *Store) lockKey(ctx context.Context, key, name string, progress func(helperapi.Progress)) (unlock func(), err error) {
	s.mu.Lock()
	if s.keys == nil {
		s.keys = make(map[string]chan struct{})
	}
	ch, ok := s.keys[key]
	if !ok {
		ch = make(chan struct{}, 1)
		s.keys[key] = ch
	}
	s.mu.Unlock()

	select {
	case ch <- struct{}{}:
	default:
		newReporter(progress, name, helperapi.PhaseWait, -1)
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for another fetch of %s: %w", name, context.Cause(ctx))
		}
	}
	sum := sha256.Sum256([]byte(key))
	unlockFile, err := flock(ctx, filepath.Join(s.dir(), ".locks", hex.EncodeToString(sum[:12])))
	if err != nil {
		<-ch
		return nil, err
	}
	return func() {
		unlockFile()
		<-ch
	}, nil
}

// List returns the cached images whose files are in place, by name.
func (s *Store) List(ctx context.Context) ([]helperapi.Image, error) {
	if err := s.prepare(); err != nil {
		return nil, err
	}
	var imgs []helperapi.Image
	err := s.withIndex(ctx, func(ix *index) (bool, error) {
		for _, img := range ix.Images {
			if s.present(img) {
				imgs = append(imgs, s.withPaths(img))
			}
		}
		return false, nil
	})
	slices.SortFunc(imgs, func(a, b helperapi.Image) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return imgs, err
}

// minPrefix is the shortest ID prefix Remove takes.
const minPrefix = 6

// Remove drops an image from the cache and deletes its files (those no
// other cached image uses). id is an image's ID, a unique prefix of it (at
// least 6 characters), its name or one of its sources. Remove does not know
// which VMs use the image: the caller must check, since an overlay whose
// base is gone cannot start.
func (s *Store) Remove(ctx context.Context, id string) error {
	if _, err := os.Stat(s.dir()); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no cached image %q: the image folder %s does not exist", id, s.dir())
	}
	var orphans []string
	err := s.withIndex(ctx, func(ix *index) (bool, error) {
		i, err := ix.resolve(id)
		if err != nil {
			return false, err
		}
		gone := ix.Images[i]
		ix.Images = slices.Delete(ix.Images, i, i+1)
		used := map[string]bool{}
		for _, img := range ix.Images {
			for _, b := range blobsOf(img) {
				used[b.File] = true
			}
		}
		for _, b := range blobsOf(gone) {
			if !used[b.File] {
				orphans = append(orphans, b.File)
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range orphans {
		if err := os.Remove(filepath.Join(s.dir(), f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove image file: %w", err))
		}
	}
	return errors.Join(errs...)
}

// resolve finds the one image id names.
func (ix *index) resolve(id string) (int, error) {
	if id == "" {
		return 0, errors.New("remove image: give an ID, name or source (List shows them)")
	}
	var exact, named, prefixed []int
	for i, img := range ix.Images {
		switch {
		case img.ID == id:
			exact = append(exact, i)
		case img.Name == id || slices.Contains(img.Sources, id):
			named = append(named, i)
		case len(id) >= minPrefix && strings.HasPrefix(img.ID, strings.ToLower(id)):
			prefixed = append(prefixed, i)
		}
	}
	for _, m := range [][]int{exact, named, prefixed} {
		switch len(m) {
		case 0:
			continue
		case 1:
			return m[0], nil
		}
		var ids []string
		for _, i := range m {
			ids = append(ids, ix.Images[i].ID[:12])
		}
		return 0, fmt.Errorf("%q matches %d cached images (%s); give more of the ID", id, len(m), strings.Join(ids, ", "))
	}
	hint := ""
	if len(id) < minPrefix {
		hint = fmt.Sprintf(" (an ID prefix needs at least %d characters)", minPrefix)
	}
	return 0, fmt.Errorf("no cached image %q%s; List shows the cached ones by ID, name and source", id, hint)
}

// Cached is Lookup changing nothing, for a dry run: it makes no folder
// and takes no lock, and reads the index as it is.
func (s *Store) Cached(src helperapi.Source) (helperapi.Image, bool, error) {
	if err := src.Validate(); err != nil {
		return helperapi.Image{}, false, err
	}
	plan, err := s.plan(src)
	if err != nil {
		return helperapi.Image{}, false, err
	}
	ix, err := s.readIndex()
	if err != nil {
		return helperapi.Image{}, false, err
	}
	img, ok := s.find(ix, plan.match)
	return img, ok, nil
}

// StandIn is the image src would be once fetched, for a dry run of a
// machine that does not have it: its files are named in the store's
// folder by what they would hold.
func (s *Store) StandIn(src helperapi.Source) helperapi.Image {
	name := sourceName(src)
	file := func(what string) *helperapi.Blob {
		return &helperapi.Blob{Path: filepath.Join(s.dir(), "<"+what+" of "+name+", once fetched>")}
	}
	img := helperapi.Image{Name: name, ID: "unfetched"}
	if src.Kernel == nil {
		img.Disk, img.Format = file("disk"), helperapi.FormatQCOW2
		return img
	}
	img.Kernel, img.Cmdline = file("kernel"), src.Cmdline
	if src.Initrd != nil {
		img.Initrd = file("initrd")
	}
	return img
}
