package vm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/digitalocean/go-libvirt"
)

// Console attaches to the VM's serial console. It first writes the last
// replay lines of the console's log to out, so the user sees where the
// boot is, then copies in to the guest and the guest to out until ctx
// ends, the console closes, or another attach takes the console over (the
// newest attach always wins).
//
// Console reads in from a goroutine that ends only when a Read on in
// returns: give it a reader you can close.
func (m *Manager) Console(ctx context.Context, name string, in io.Reader, out io.Writer, replay int) error {
	dom, _, err := m.lookup(name)
	if err != nil {
		return err
	}
	if !m.running(dom) {
		return fmt.Errorf("vm %q is not running; start it first", name)
	}
	if replay > 0 {
		tail, err := lastLines(m.logPath(name), replay)
		if err != nil {
			return fmt.Errorf("replay console of vm %q: %w", name, err)
		}
		if _, err := out.Write(tail); err != nil {
			return err
		}
	}
	// A connection of its own: hanging it up ends this session only.
	l, err := dial(m.o.Socket)
	if err != nil {
		return err
	}
	defer hangUp(l)
	done := make(chan error, 1)
	go func() {
		done <- l.DomainOpenConsoleBidirectional(dom, nil, in, out, uint32(libvirt.DomainConsoleForce))
	}()
	select {
	case err := <-done:
		if err != nil && err != libvirt.ErrInterrupted {
			return fmt.Errorf("console of vm %q ended: another session took it over, or the VM stopped (%w)", name, err)
		}
		return nil
	case <-ctx.Done():
		hangUp(l)
		// The stream's copy may sit in a read of in; do not wait on it
		// for long, so a detach always ends the helper.
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
		return nil
	}
}

// hangUp disconnects a console's own libvirt connection, waiting a short
// while at most: after a stream was taken over or aborted, libvirtd may
// not answer the goodbye, and a console must end all the same (the
// process's exit closes the socket).
func hangUp(l *libvirt.Libvirt) {
	done := make(chan struct{})
	go func() {
		l.Disconnect()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// lastLines returns up to n whole lines from the end of a file.
func lastLines(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	const window = 256 << 10
	off := max(fi.Size()-window, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, err
	}
	if off > 0 { // drop the partial first line
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	lines := bytes.SplitAfter(buf, []byte("\n"))
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, nil), nil
}

// Events streams VM lifecycle events until ctx ends or libvirtd hangs up.
func (m *Manager) Events(ctx context.Context) (<-chan helperapi.VMEvent, error) {
	ch, err := m.l.LifecycleEvents(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribe to vm events: %w", err)
	}
	out := make(chan helperapi.VMEvent)
	go func() {
		defer close(out)
		// go-libvirt's sender blocks on ch until it sees ctx end: take
		// what it still sends, so that it gets there and unsubscribes.
		defer func() {
			for range ch {
			}
		}()
		for e := range ch {
			ev := helperapi.VMEvent{VM: e.Dom.Name, Event: eventName(libvirt.DomainEventType(e.Event))}
			if st, _, err := m.l.DomainGetState(e.Dom, 0); err == nil {
				ev.State = stateName(libvirt.DomainState(st))
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func eventName(t libvirt.DomainEventType) string {
	switch t {
	case libvirt.DomainEventDefined:
		return "defined"
	case libvirt.DomainEventUndefined:
		return "undefined"
	case libvirt.DomainEventStarted:
		return "started"
	case libvirt.DomainEventSuspended:
		return "suspended"
	case libvirt.DomainEventResumed:
		return "resumed"
	case libvirt.DomainEventStopped:
		return "stopped"
	case libvirt.DomainEventShutdown:
		return "shutdown"
	case libvirt.DomainEventPmsuspended:
		return "pmsuspended"
	case libvirt.DomainEventCrashed:
		return "crashed"
	}
	return "unknown"
}
