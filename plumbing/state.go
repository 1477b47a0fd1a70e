package plumbing

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/butter-cloud/butter/helperapi"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

const (
	keyFile  = "wireguard.key"
	specFile = "spec.json"
)

// state is the helper's folder on the machine.
type state struct{ dir string }

// privateKey loads the machine's WireGuard private key, making it on first
// use. It is kept 0600 and never leaves the machine.
func (s state) privateKey() (wgtypes.Key, error) {
	k, ok, err := s.key()
	if err != nil || ok {
		return k, err
	}
	return s.newKey()
}

// key loads the machine's private key, if it has one yet.
func (s state) key() (wgtypes.Key, bool, error) {
	path := filepath.Join(s.dir, keyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return wgtypes.Key{}, false, nil
	}
	if err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("read private key: %w", err)
	}
	k, err := wgtypes.ParseKey(string(trimSpace(data)))
	if err != nil {
		return wgtypes.Key{}, false, fmt.Errorf("read private key %s: not a WireGuard key; move it away to make a new one: %w", path, err)
	}
	return k, true, nil
}

// newKey makes a new private key and puts it in place of the old one, if
// any, in one rename: no copy of the old key is kept, and a crash leaves
// the old key or the new one whole.
func (s state) newKey() (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("generate private key: %w", err)
	}
	if err := writeAtomic(filepath.Join(s.dir, keyFile), []byte(k.String()+"\n"), 0o600); err != nil {
		return wgtypes.Key{}, fmt.Errorf("save private key: %w", err)
	}
	return k, nil
}

// spec returns the persisted spec, if there is one: the last spec that
// applied whole (see Helper.Apply).
func (s state) spec() (helperapi.Spec, bool, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, specFile))
	if errors.Is(err, fs.ErrNotExist) {
		return helperapi.Spec{}, false, nil
	}
	if err != nil {
		return helperapi.Spec{}, false, fmt.Errorf("read applied spec: %w", err)
	}
	spec, err := helperapi.ParseSpec(data)
	if err != nil {
		return helperapi.Spec{}, false, fmt.Errorf("applied spec %s: %w", filepath.Join(s.dir, specFile), err)
	}
	return spec, true, nil
}

func (s state) saveSpec(spec helperapi.Spec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.dir, specFile), append(data, '\n'), 0o600)
}

func (s state) forgetSpec() error {
	err := os.Remove(filepath.Join(s.dir, specFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// writeAtomic replaces path with data: a temporary file beside it, synced,
// renamed over it, and the folder synced, so a crash leaves the old or the
// new file whole.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
