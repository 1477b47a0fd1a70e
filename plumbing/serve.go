package plumbing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/images"
	"github.com/butter-cloud/butter/plumbing/vm"
)

// remoteVerb runs the verbs the operator's butter uses over SSH: serve,
// supervise and image import.
func (c *command) remoteVerb(verb string, args []string) error {
	switch verb {
	case "serve":
		if err := c.fs.Parse(args); err != nil {
			return err
		}
		return Relay(c.ctx, c.socket, c.stdin, c.stdout)
	case "supervise":
		pidFile := c.fs.String("pid-file", helperapi.DefaultSupervisePIDFile, "where to record the supervisor's process ID")
		if err := c.fs.Parse(args); err != nil {
			return err
		}
		// The daemon flags were parsed into c with the others: hand
		// them on.
		daemonArgs := []string{"--state-dir", c.stateDir, "--socket", c.socket,
			"--libvirt-socket", c.libvirtSocket, "--accel", c.accel}
		if c.imageMirror != "" {
			daemonArgs = append(daemonArgs, "--image-mirror", c.imageMirror)
		}
		if c.maxImageSize > 0 {
			daemonArgs = append(daemonArgs, "--max-image-size", strconv.FormatInt(c.maxImageSize, 10))
		}
		return Supervise(c.ctx, *pidFile, append(daemonArgs, c.fs.Args()...), c.stderr)
	case "image":
		switch {
		case len(args) > 0 && args[0] == "import":
			return c.imageImport(args[1:])
		case len(args) > 0 && args[0] == "has":
			return c.imageHas(args[1:])
		}
		return errors.New("butter helper image: give import or has")
	}
	return fmt.Errorf("butter helper: unknown verb %q", verb)
}

// Relay is `butter helper serve`: it connects to the daemon's socket,
// writes the hello line to out, then copies in to the daemon and the
// daemon to out until either side ends or ctx ends.
func Relay(ctx context.Context, socket string, in io.Reader, out io.Writer) error {
	version, err := SelfVersion()
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return fmt.Errorf("reach the helper daemon at %s (is `butter helper daemon` running?): %w", socket, err)
	}
	defer conn.Close()
	if _, err := io.WriteString(out, helperapi.ServeHello(version)); err != nil {
		return fmt.Errorf("write hello: %w", err)
	}
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, in)
		done <- err // the operator hung up (EOF) or stdin broke
	}()
	go func() {
		_, err := io.Copy(out, conn)
		if err == nil {
			err = errors.New("the helper daemon closed the connection")
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil
	}
	// Closing conn ends the other copy from the daemon's side; the one
	// reading stdin ends when the process exits.
	return err
}

// Supervise is `butter helper supervise [--pid-file F] [DAEMON FLAGS]`:
// it runs `butter helper daemon DAEMON FLAGS` from the same executable and
// starts it again whenever it exits, waiting 1 s, then twice as long each
// time up to 30 s (back to 1 s after a minute of running). It records its
// process ID in pidFile, holding a lock on it so that only one supervisor
// runs; when ctx ends it stops the daemon with SIGTERM and returns. The
// daemon's log goes to log.
func Supervise(ctx context.Context, pidFile string, daemonArgs []string, log io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervise: find own executable: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(pidFile), 0o755); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	f, err := os.OpenFile(pidFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("supervise: another supervisor holds %s: %w", pidFile, err)
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return fmt.Errorf("supervise: %w", err)
	}
	defer os.Remove(pidFile)

	wait := time.Second
	for {
		started := time.Now()
		cmd := exec.Command(exe, append([]string{"helper", "daemon"}, daemonArgs...)...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(log, "supervise: start daemon: %v\n", err)
		} else {
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				fmt.Fprintf(log, "supervise: daemon exited (%v)\n", err)
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
				return nil
			}
		}
		if time.Since(started) > time.Minute {
			wait = time.Second
		}
		fmt.Fprintf(log, "supervise: restarting the daemon in %s\n", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// imageImport is `butter helper image import --name N --size S --sha256 H`:
// it streams standard input into the machine's image store and prints the
// image as JSON. Nothing is read when the store already holds the content.
func (c *command) imageImport(args []string) error {
	name := c.fs.String("name", "", "the image's name, for display")
	size := c.fs.Int64("size", -1, "the image's length in bytes")
	sum := c.fs.String("sha256", "", "the image's sha256, hex")
	dir := c.fs.String("images-dir", vm.DefaultImagesDir, "the image store's folder")
	kind := c.fs.String("kind", "disk", "what the file is: disk (an image), kernel or initrd (for kernel boot)")
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *size < 0 || *sum == "" {
		return errors.New("butter helper image import: give --name, --size and --sha256")
	}
	f := &helperapi.File{Path: *name, Size: *size, SHA256: *sum, Body: c.stdin}
	// Content the store has already is not read: take it anyway, so the
	// sender sees its upload end cleanly rather than a closed pipe.
	defer io.Copy(io.Discard, c.stdin)
	enc := json.NewEncoder(c.stdout)
	if *kind != "disk" {
		b, err := c.store(*dir).PutBlob(c.ctx, *kind, f, nil)
		if err != nil {
			return err
		}
		return enc.Encode(helperapi.Image{ID: b.SHA256, Name: *name, Kernel: &b})
	}
	img, err := c.store(*dir).Ensure(c.ctx, helperapi.Source{File: f}, nil)
	if err != nil {
		return err
	}
	return enc.Encode(img)
}

// store is the image store in dir, with the command's bounds.
func (c *command) store(dir string) *images.Store {
	s := images.New(dir)
	s.MaxImageSize = c.maxImageSize
	return s
}

// imageHas is `butter helper image has --kind K --sha256 H`: it prints yes
// when the machine's image store holds that content, so the operator can
// skip an upload.
func (c *command) imageHas(args []string) error {
	sum := c.fs.String("sha256", "", "the content's sha256, hex")
	kind := c.fs.String("kind", "disk", "disk, kernel or initrd")
	dir := c.fs.String("images-dir", vm.DefaultImagesDir, "the image store's folder")
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if *sum == "" {
		return errors.New("butter helper image has: give --sha256")
	}
	store := images.New(*dir)
	have := false
	if *kind == "disk" {
		_, ok, err := store.Lookup(c.ctx, helperapi.Source{File: &helperapi.File{Path: "upload", SHA256: *sum}})
		if err != nil {
			return err
		}
		have = ok
	} else {
		_, have = store.BlobSize(*kind, *sum)
	}
	if have {
		_, err := fmt.Fprintln(c.stdout, "yes")
		return err
	}
	_, err := fmt.Fprintln(c.stdout, "no")
	return err
}
