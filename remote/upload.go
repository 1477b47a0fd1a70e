package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// ErrChecksum: what arrived on the machine is not what was sent.
var ErrChecksum = errors.New("sha256 mismatch")

// Upload is one file to write on the machine.
type Upload struct {
	// Path is where it goes; its folder is made if missing, and so are
	// its parents, each 0700 (the helper's /var/lib/butter is private
	// from the first install).
	Path string
	// Mode is its permission bits (0644 if zero).
	Mode os.FileMode
	// SHA256 is the hex sha256 of Body's content, checked on the machine
	// before the file takes its name.
	SHA256 string
	// Body is the content.
	Body io.Reader
	// Root writes it as root.
	Root bool
}

// uploadStatus is the exit status the upload script uses for a mismatch.
const uploadStatus = 87

// Upload writes a file atomically: the content goes to a temporary file
// beside the target, the machine computes its sha256 (sha256sum), and only
// if it matches is the file renamed into place. Nothing is left under
// either name when it does not, or when ctx ends.
func (c *Client) Upload(ctx context.Context, u Upload) error {
	if !path.IsAbs(u.Path) {
		return fmt.Errorf("upload to %s: want an absolute path", u.Path)
	}
	sum := strings.ToLower(u.SHA256)
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 {
		return fmt.Errorf("upload to %s: %q is not a hex sha256", u.Path, u.SHA256)
	}
	mode := u.Mode
	if mode == 0 {
		mode = 0o644
	}
	var r [6]byte
	rand.Read(r[:])
	tmp := path.Join(path.Dir(u.Path), "."+path.Base(u.Path)+".tmp-"+hex.EncodeToString(r[:]))
	script := fmt.Sprintf(`set -e
t=%s
(umask 077; mkdir -p %s)
trap 'rm -f "$t"' EXIT HUP INT TERM
(umask 077; cat > "$t")
got=$(sha256sum "$t" | cut -d' ' -f1)
if [ "$got" != %s ]; then echo "sha256 of %s on the machine is $got" >&2; exit %d; fi
chmod %o "$t"
mv -f "$t" %s
trap - EXIT HUP INT TERM
`, shellQuote(tmp), shellQuote(path.Dir(u.Path)), sum, shellQuote(tmp), uploadStatus, mode.Perm(), shellQuote(u.Path))
	err := c.Run(ctx, Cmd{Line: script, Root: u.Root, Stdin: u.Body})
	var re *RunError
	if errors.As(err, &re) && re.Status == uploadStatus {
		return fmt.Errorf("upload to %s on %s: %w (want %s): %s; the file was not replaced",
			u.Path, c.Host, ErrChecksum, sum, strings.TrimSpace(re.Stderr))
	}
	if err != nil {
		return fmt.Errorf("upload to %s: %w", u.Path, err)
	}
	return nil
}

// remoteSHA256 is the hex sha256 of path on the machine, "" if there is no
// such file.
func (c *Client) remoteSHA256(ctx context.Context, root bool, p string) (string, error) {
	out, err := c.Output(ctx, root, fmt.Sprintf(`if [ -f %[1]s ]; then sha256sum %[1]s | cut -d' ' -f1; fi`, shellQuote(p)))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}
