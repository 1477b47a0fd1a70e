package images

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

const progressEvery = 100 * time.Millisecond

type reporter struct {
	fn   func(helperapi.Progress)
	p    helperapi.Progress
	last time.Time
}

func newReporter(fn func(helperapi.Progress), name string, phase helperapi.Phase, total int64) *reporter {
	r := &reporter{fn: fn, p: helperapi.Progress{Name: name, Phase: phase, Total: total}}
	r.report(0, true)
	return r
}

func (r *reporter) report(done int64, force bool) {
	if r.fn == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(r.last) < progressEvery {
		return
	}
	r.p.Done = done
	r.last = now
	r.fn(r.p)
}

// partialPrefix starts the names of files being written; they are renamed
// into place once verified, or removed.
const partialPrefix = ".partial-"

// staged is a verified file under a temporary name in the store's folder.
type staged struct {
	tmp    string
	size   int64
	sha256 string
	head   []byte // the first sniffSize bytes, to tell the format
}

// expect is what a staged file must match. Zero fields are not checked.
type expect struct {
	size int64              // -1: any
	sum  helperapi.Checksum // the digest given by the operator or the publisher
	from string             // where sum comes from, for errors
	max  int64              // the most bytes taken; 0: no bound
}

// stage streams r into a temporary file in dir, hashing as it writes,
// then syncs it and checks it against want. On any failure the temporary
// file is gone and nothing is left behind.
func stage(ctx context.Context, dir string, r io.Reader, name string, phase helperapi.Phase, total int64, want expect, progress func(helperapi.Progress)) (_ *staged, err error) {
	f, err := os.CreateTemp(dir, partialPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	sha := sha256.New()
	hashes := map[string]hash.Hash{"sha256": sha}
	if want.sum.Algo == "sha512" {
		hashes["sha512"] = sha512.New()
	}
	writers := []io.Writer{f}
	for _, h := range hashes {
		writers = append(writers, h)
	}
	w := io.MultiWriter(writers...)
	if want.size >= 0 {
		// One byte more than promised is enough to tell it was too long.
		r = io.LimitReader(r, want.size+1)
	}
	if want.max > 0 {
		// Checked as it streams: the disk never holds more than this.
		r = io.LimitReader(r, want.max+1)
	}

	rep := newReporter(progress, name, phase, total)
	head := make([]byte, 0, sniffSize)
	buf := make([]byte, 256*1024)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%s %s: %w", phase, name, context.Cause(ctx))
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			if len(head) < sniffSize {
				head = append(head, buf[:min(m, sniffSize-len(head))]...)
			}
			if _, err := w.Write(buf[:m]); err != nil {
				return nil, fmt.Errorf("write %s: %w", f.Name(), err)
			}
			n += int64(m)
			rep.report(n, false)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				rerr = context.Cause(ctx)
			}
			return nil, fmt.Errorf("%s %s after %d bytes: %w", phase, name, n, rerr)
		}
	}
	rep.report(n, true)
	if want.max > 0 && n > want.max {
		return nil, fmt.Errorf("%s %s: more than the maximum image size of %d bytes; nothing was cached", phase, name, want.max)
	}

	v := newReporter(progress, name, helperapi.PhaseVerify, n)
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if want.size >= 0 && n != want.size {
		return nil, fmt.Errorf("%s %s: expected %d bytes, got %d%s; nothing was cached", phase, name, want.size, n, orMore(n > want.size))
	}
	st := &staged{tmp: f.Name(), size: n, sha256: hex.EncodeToString(sha.Sum(nil)), head: head}
	if !want.sum.IsZero() {
		got := hex.EncodeToString(hashes[want.sum.Algo].Sum(nil))
		if got != want.sum.Hex {
			return nil, fmt.Errorf("%s mismatch for %s: expected %s (%s), got %s; nothing was cached",
				want.sum.Algo, name, want.sum.Hex, want.from, got)
		}
	}
	v.report(n, true)
	return st, nil
}

func orMore(more bool) string {
	if more {
		return " or more"
	}
	return ""
}

// discard removes a staged file that will not be used.
func (st *staged) discard() {
	if st != nil {
		os.Remove(st.tmp)
	}
}

// commit renames the staged file to name in dir. Identical content may be
// there already (the name carries the hash); then the staged copy goes.
func (st *staged) commit(dir, name string) error {
	dst := filepath.Join(dir, name)
	if fi, err := os.Stat(dst); err == nil && fi.Mode().IsRegular() && fi.Size() == st.size {
		st.discard()
		return nil
	}
	if err := os.Chmod(st.tmp, 0o644); err != nil {
		st.discard()
		return fmt.Errorf("chmod %s: %w", st.tmp, err)
	}
	if err := os.Rename(st.tmp, dst); err != nil {
		st.discard()
		return fmt.Errorf("rename %s into place: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}
