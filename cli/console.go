package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/tui"
)

// idleWriter remembers when it was last written to.
type idleWriter struct {
	w    io.Writer
	mu   sync.Mutex
	last time.Time // zero until the first write
}

func (w *idleWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
	return w.w.Write(p)
}

// quiet tells whether output has come and then stopped for d.
func (w *idleWriter) quiet(d time.Duration) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.last.IsZero() && time.Since(w.last) >= d
}

// attachConsole attaches the terminal (or the streams) to a VM's console.
// At a terminal it switches to raw mode and detaches on Ctrl+] or ~.;
// otherwise, when input ends, it detaches once output has been quiet for
// idle.
func attachConsole(ctx context.Context, cl *cloud.Cloud, name string, idle time.Duration, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("terminal raw mode: %w", err)
		}
		defer term.Restore(int(f.Fd()), old)
		fmt.Fprintf(stderr, "Attached to %s. Ctrl+] or ~. detaches.\r\n", name)
	}
	out := &idleWriter{w: stdout}
	var detached atomic.Bool
	pr, pw := io.Pipe()
	go func() {
		defer pw.Close()
		switch detach, err := tui.ForwardInput(pw, stdin); {
		case detach:
		case err != nil:
			// Input ran out (a script): stay until the output has come and
			// gone quiet for idle, at most a minute.
			for end := time.Now().Add(time.Minute); ctx.Err() == nil && !out.quiet(idle) && time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond)
			}
		default:
			return // the console ended
		}
		detached.Store(true)
		cancel()
	}()
	err := cl.Console(ctx, name, pr, out)
	pr.Close()
	if detached.Load() {
		return nil
	}
	return err
}
