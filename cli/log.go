package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// The operator's log: every run of butter, every SSH dial, every command
// run on a machine and every helper call, with its duration and outcome
// (package remote writes those), in $XDG_STATE_HOME/butter/butter.log
// (default ~/.local/state/butter/butter.log), mode 0600. It stays under
// logMax bytes: beyond, it moves to butter.log.1, replacing the one there.
// --debug prints the same lines on stderr too. Secrets stay out by
// construction (remote logs command lines, never standard input, output or
// keys); redact is a last guard that drops a value that looks like a key.

// logMax bounds the log file; with its one old copy the log takes at most
// twice that.
const logMax = 4 << 20

// logPathHelp is where the log is, for help texts.
const logPathHelp = "$XDG_STATE_HOME/butter/butter.log\n(default ~/.local/state/butter/butter.log)"

// LogPath is the log file: under $XDG_STATE_HOME if that is an absolute
// path (as the XDG spec wants), else ~/.local/state.
func LogPath() (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("where to log: %w", err)
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "butter", "butter.log"), nil
}

// openLog opens the log, and with debug prints it to stderr as well. A log
// that cannot be opened is said once on stderr and not kept; butter runs on.
func openLog(debug bool, stderr io.Writer) (*slog.Logger, func()) {
	var handlers []slog.Handler
	closeLog := func() {}
	opts := &slog.HandlerOptions{ReplaceAttr: redact}
	if path, err := LogPath(); err != nil {
		fmt.Fprintf(stderr, "butter: no log: %v\n", err)
	} else if f, err := openRotating(path, logMax); err != nil {
		fmt.Fprintf(stderr, "butter: no log: %v\n", err)
	} else {
		handlers = append(handlers, slog.NewTextHandler(f, opts))
		closeLog = func() { f.Close() }
	}
	if debug {
		handlers = append(handlers, slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: redact}))
	}
	return slog.New(slog.NewMultiHandler(handlers...)), closeLog
}

// redact drops a string value that holds key material.
func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindString && strings.Contains(a.Value.String(), "PRIVATE KEY") {
		return slog.String(a.Key, "[redacted: key material]")
	}
	return a
}

// rotating is an append-only file that moves aside to path.1 when it
// would grow beyond max.
type rotating struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
}

func openRotating(path string, max int64) (*rotating, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log folder: %w", err)
	}
	r := &rotating{path: path, max: max}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// open opens path for appending, 0600 whatever it was before.
func (r *rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm() != 0o600 {
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("log %s: %w", r.path, err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotating) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, errors.New("log closed")
	}
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		r.f.Close()
		r.f = nil
		if err := os.Rename(r.path, r.path+".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("rotate log: %w", err)
		}
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// logged says in the log that a run of butter has ended, and how.
func logged(ctx context.Context, l *slog.Logger, args []string, code int, err error) {
	attrs := []slog.Attr{slog.String("args", strings.Join(args, " ")), slog.Int("exit", code)}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	l.LogAttrs(ctx, slog.LevelInfo, "butter ran", attrs...)
}
