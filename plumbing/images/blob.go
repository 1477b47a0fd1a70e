package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// PutBlob keeps one file of a kernel boot image, uploaded on its own (the
// operator sends the kernel and the initrd in separate streams): it is
// stored as <kind>-<sha256>, checked against f's size and sha256, and
// found by the kernel boot Ensure that names it later. Content the store
// has already is not read again.
func (s *Store) PutBlob(ctx context.Context, kind string, f *helperapi.File, progress func(helperapi.Progress)) (helperapi.Blob, error) {
	if kind != helperapi.BlobKernel && kind != helperapi.BlobInitrd {
		return helperapi.Blob{}, fmt.Errorf("blob kind %q: want %s or %s", kind, helperapi.BlobKernel, helperapi.BlobInitrd)
	}
	c := *f
	c.SHA256 = strings.ToLower(c.SHA256)
	if _, err := helperapi.ParseChecksum("sha256:" + c.SHA256); err != nil {
		return helperapi.Blob{}, fmt.Errorf("upload %s %s: %w", kind, f.Path, err)
	}
	if err := s.prepare(); err != nil {
		return helperapi.Blob{}, err
	}
	file := kind + "-" + c.SHA256
	b := helperapi.Blob{File: file, Path: filepath.Join(s.dir(), file), Size: c.Size, SHA256: c.SHA256}
	if fi, err := os.Stat(b.Path); err == nil && fi.Size() == c.Size {
		return b, nil
	}
	unlock, err := s.lockKey(ctx, "blob:"+file, baseName(c.Path), progress)
	if err != nil {
		return helperapi.Blob{}, err
	}
	defer unlock()
	if fi, err := os.Stat(b.Path); err == nil && fi.Size() == c.Size {
		return b, nil
	}
	if err := checkUpload(kind, &c); err != nil {
		return helperapi.Blob{}, err
	}
	if c.Size == 0 {
		return helperapi.Blob{}, fmt.Errorf("upload %s %s: the file is empty", kind, c.Path)
	}
	st, err := s.upload(ctx, baseName(c.Path), &c, progress)
	if err != nil {
		return helperapi.Blob{}, err
	}
	if err := st.commit(s.dir(), file); err != nil {
		st.discard()
		return helperapi.Blob{}, err
	}
	return b, nil
}

// BlobSize is the size of a kept kernel boot blob, or false when the
// store does not have it.
func (s *Store) BlobSize(kind, sha256 string) (int64, bool) {
	// Both come from a request and make a path: only a known kind and a
	// hex digest do.
	sha256 = strings.ToLower(sha256)
	if kind != helperapi.BlobKernel && kind != helperapi.BlobInitrd {
		return 0, false
	}
	if _, err := helperapi.ParseChecksum("sha256:" + sha256); err != nil {
		return 0, false
	}
	fi, err := os.Stat(filepath.Join(s.dir(), kind+"-"+sha256))
	if err != nil || !fi.Mode().IsRegular() {
		return 0, false
	}
	return fi.Size(), true
}
