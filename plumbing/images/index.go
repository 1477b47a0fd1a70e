package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/butter-cloud/butter/helperapi"
)

func blobsOf(img helperapi.Image) []*helperapi.Blob {
	var bs []*helperapi.Blob
	for _, b := range []*helperapi.Blob{img.Disk, img.Kernel, img.Initrd} {
		if b != nil {
			bs = append(bs, b)
		}
	}
	return bs
}

// indexFile maps sources to content; it lives beside the images.
const indexFile = "index.json"

type index struct {
	Version int               `json:"version"`
	Images  []helperapi.Image `json:"images"`
}

// withIndex runs fn on the index under the index lock, and saves the index
// if fn reports a change.
func (s *Store) withIndex(ctx context.Context, fn func(ix *index) (changed bool, err error)) error {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	unlock, err := flock(ctx, filepath.Join(s.dir(), ".index.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	ix, err := s.readIndex()
	if err != nil {
		return err
	}
	changed, err := fn(ix)
	if err != nil || !changed {
		return err
	}
	return s.writeIndex(ix)
}

func (s *Store) readIndex() (*index, error) {
	p := filepath.Join(s.dir(), indexFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return &index{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var ix index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("image index %s is damaged (remove it; cached files are fetched again): %w", p, err)
	}
	if ix.Version != 1 {
		return nil, fmt.Errorf("image index %s has version %d; this helper knows version 1", p, ix.Version)
	}
	return &ix, nil
}

func (s *Store) writeIndex(ix *index) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image index: %w", err)
	}
	f, err := os.CreateTemp(s.dir(), partialPrefix+"index-*")
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.dir(), indexFile))
	}
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	return syncDir(s.dir())
}

// find returns the first image for which match holds and whose files are
// all in place.
func (s *Store) find(ix *index, match func(helperapi.Image) bool) (helperapi.Image, bool) {
	for _, img := range ix.Images {
		if match(img) && s.present(img) {
			return s.withPaths(img), true
		}
	}
	return helperapi.Image{}, false
}

// present checks that an image's files are there with the right size.
func (s *Store) present(img helperapi.Image) bool {
	for _, b := range blobsOf(img) {
		fi, err := os.Stat(filepath.Join(s.dir(), b.File))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != b.Size {
			return false
		}
	}
	return true
}

// withPaths returns a deep copy of img with the blobs' paths filled in.
func (s *Store) withPaths(img helperapi.Image) helperapi.Image {
	img.Sources = slices.Clone(img.Sources)
	for _, b := range []**helperapi.Blob{&img.Disk, &img.Kernel, &img.Initrd} {
		if *b != nil {
			c := **b
			c.Path = filepath.Join(s.dir(), c.File)
			*b = &c
		}
	}
	return img
}

// put adds img to the index, or adds its sources to the entry with the
// same ID. It returns the entry as stored.
func (ix *index) put(img helperapi.Image) helperapi.Image {
	// A source names one image: a catalog name that now resolves to new
	// content stops naming the old one.
	for i := range ix.Images {
		if ix.Images[i].ID != img.ID {
			ix.Images[i].Sources = slices.DeleteFunc(ix.Images[i].Sources, func(s string) bool {
				return slices.Contains(img.Sources, s)
			})
		}
	}
	for i, old := range ix.Images {
		if old.ID != img.ID {
			continue
		}
		for _, src := range img.Sources {
			if !slices.Contains(old.Sources, src) {
				old.Sources = append(old.Sources, src)
			}
		}
		// The files were just written again: their records are current.
		old.Disk, old.Kernel, old.Initrd = img.Disk, img.Kernel, img.Initrd
		if old.Verified == "" {
			old.Verified = img.Verified
		}
		ix.Images[i] = old
		return old
	}
	ix.Images = append(ix.Images, img)
	return img
}
