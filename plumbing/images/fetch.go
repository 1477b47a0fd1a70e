package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

func (s *Store) fetchCatalog(ctx context.Context, name, key string, progress func(helperapi.Progress)) (helperapi.Image, error) {
	imageURL, sumsURL, sigURL, file, err := catalogURLs(name, s.arch(), s.Mirror)
	if err != nil {
		return helperapi.Image{}, err
	}
	sums, err := s.getSmall(ctx, sumsURL)
	if err != nil {
		return helperapi.Image{}, err
	}
	from := "listed in " + sumsURL
	if sigURL == "" {
		from += " (unsigned: the distribution publishes no signature for it; trusted through TLS only)"
	} else {
		signer, err := s.checkSigned(ctx, sums, sumsURL, sigURL)
		if err != nil {
			return helperapi.Image{}, fmt.Errorf("catalog image %s: %w; nothing was downloaded", name, err)
		}
		from += ", signed by " + signer
	}
	algo := catalog[name].algo
	digest, err := findSum(strings.NewReader(string(sums)), algo, file)
	if err != nil {
		return helperapi.Image{}, fmt.Errorf("checksum file %s: %w", sumsURL, err)
	}
	want := expect{size: -1, sum: helperapi.Checksum{Algo: algo, Hex: digest}, from: from}
	st, err := s.download(ctx, imageURL, file, want, true, progress)
	if err != nil {
		return helperapi.Image{}, err
	}
	return s.commitDisk(st, name, key, want.sum.String()+" "+want.from)
}

// checkSigned fetches sigURL and checks it as a signature of sums by one of
// the store's trusted keys.
func (s *Store) checkSigned(ctx context.Context, sums []byte, sumsURL, sigURL string) (string, error) {
	keyring := s.Keyring
	if keyring == nil {
		k, err := EmbeddedKeyring()
		if err != nil {
			return "", err
		}
		keyring = k
	}
	sig, err := s.getSmall(ctx, sigURL)
	if err != nil {
		return "", fmt.Errorf("the checksum file's signature: %w", err)
	}
	signer, err := verifySums(keyring, sums, sig)
	if err != nil {
		return "", fmt.Errorf("checksum file %s, signature %s: %w", sumsURL, sigURL, err)
	}
	return signer, nil
}

func (s *Store) fetchURL(ctx context.Context, src helperapi.Source, key string, progress func(helperapi.Progress)) (helperapi.Image, error) {
	want := expect{size: -1, sum: src.Checksum, from: "given with the URL"}
	st, err := s.download(ctx, src.URL, sourceName(src), want, src.Checksum.IsZero(), progress)
	if err != nil {
		return helperapi.Image{}, err
	}
	verified := ""
	if !src.Checksum.IsZero() {
		verified = src.Checksum.String() + " " + want.from
	}
	return s.commitDisk(st, sourceName(src), key, verified)
}

func (s *Store) fetchUpload(ctx context.Context, f *helperapi.File, progress func(helperapi.Progress)) (helperapi.Image, error) {
	if err := checkUpload("image", f); err != nil {
		return helperapi.Image{}, err
	}
	name := baseName(f.Path)
	st, err := s.upload(ctx, name, f, progress)
	if err != nil {
		return helperapi.Image{}, err
	}
	return s.commitDisk(st, name, "file="+name, "sha256:"+f.SHA256+" computed by the operator")
}

func (s *Store) upload(ctx context.Context, name string, f *helperapi.File, progress func(helperapi.Progress)) (*staged, error) {
	want := expect{size: f.Size, sum: helperapi.Checksum{Algo: "sha256", Hex: f.SHA256}, from: "computed by the operator", max: s.maxImageSize()}
	return stage(ctx, s.dir(), f.Body, name, helperapi.PhaseUpload, f.Size, want, progress)
}

// commitDisk checks a staged disk image's format and moves it into place.
func (s *Store) commitDisk(st *staged, name, source, verified string) (helperapi.Image, error) {
	format, err := detectFormat(st.head, st.size)
	if err != nil {
		st.discard()
		return helperapi.Image{}, fmt.Errorf("%w; nothing was cached", err)
	}
	file := "base-" + st.sha256 + "." + string(format)
	if err := st.commit(s.dir(), file); err != nil {
		return helperapi.Image{}, err
	}
	return helperapi.Image{
		ID:       st.sha256,
		Name:     name,
		Sources:  []string{source},
		Format:   format,
		Disk:     &helperapi.Blob{File: file, Size: st.size, SHA256: st.sha256},
		Verified: verified,
		Fetched:  time.Now().UTC(),
	}, nil
}

func (s *Store) fetchKernel(ctx context.Context, id, source string, kernel, initrd *helperapi.File, cmdline string, progress func(helperapi.Progress)) (_ helperapi.Image, err error) {
	img := helperapi.Image{
		ID:       id,
		Name:     baseName(kernel.Path),
		Cmdline:  cmdline,
		Verified: "sha256 computed by the operator",
		Fetched:  time.Now().UTC(),
	}
	var pending []*staged
	defer func() {
		if err != nil {
			for _, st := range pending {
				st.discard()
			}
		}
	}()
	var commits []func() error
	for _, part := range []struct {
		what string
		f    *helperapi.File
		blob **helperapi.Blob
	}{{"kernel", kernel, &img.Kernel}, {"initrd", initrd, &img.Initrd}} {
		if part.f == nil {
			continue
		}
		file := part.what + "-" + part.f.SHA256
		b := &helperapi.Blob{File: file, Size: part.f.Size, SHA256: part.f.SHA256}
		*part.blob = b
		if fi, err := os.Stat(filepath.Join(s.dir(), file)); err == nil && fi.Size() == part.f.Size {
			continue // the same content came with another image
		}
		if err := checkUpload(part.what, part.f); err != nil {
			return helperapi.Image{}, err
		}
		if part.f.Size == 0 {
			return helperapi.Image{}, fmt.Errorf("upload %s %s: the file is empty", part.what, part.f.Path)
		}
		st, err := s.upload(ctx, baseName(part.f.Path), part.f, progress)
		if err != nil {
			return helperapi.Image{}, err
		}
		pending = append(pending, st)
		commits = append(commits, func() error { return st.commit(s.dir(), file) })
	}
	for _, c := range commits {
		if err := c(); err != nil {
			return helperapi.Image{}, err
		}
	}
	img.Sources = []string{source}
	return img, nil
}
