package plumbing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/butter-cloud/butter/plumbing/images"
	"github.com/butter-cloud/butter/plumbing/vm"
	"github.com/sourcegraph/jsonrpc2"
)

// DefaultSocket is where the helper daemon listens for local calls.
const DefaultSocket = "/run/butter/helper.sock"

// Methods of the helper's JSON-RPC 2.0 interface.
const (
	MethodApply     = "helper.apply"
	MethodCheck     = "helper.check"
	MethodRemove    = "helper.remove"
	MethodFacts     = "helper.facts"
	MethodPublicKey = "helper.public_key"
	MethodVMCreate  = "helper.vm.create"
	MethodVMList    = "helper.vm.list"
	MethodVMAction  = "helper.vm.action"
	MethodImages    = "helper.images"
	// MethodWatch subscribes the connection to VM lifecycle events: the
	// daemon pushes NotifyEvent for every VM there is (event "present"),
	// then for every change, until MethodUnwatch or the connection closes.
	MethodWatch   = "helper.watch"
	MethodUnwatch = "helper.unwatch"

	// NotifyProgress is pushed to the caller while an image moves.
	NotifyProgress = "helper.progress"
	// NotifyEvent carries a vm.Event to a watching connection.
	NotifyEvent = "helper.event"
	// NotifyWatchEnded tells a watching connection that no more events
	// will come (libvirtd went away); its params are a WatchEnded.
	NotifyWatchEnded = "helper.watch_ended"
)

// EventPresent is the event of a VM that exists when a watch begins.
const EventPresent = "present"

// WatchEnded is NotifyWatchEnded's params.
type WatchEnded struct {
	Error string `json:"error"`
}

// ProgressEvent is NotifyProgress's params: how the image of a VM being
// created moves.
type ProgressEvent struct {
	VM string `json:"vm"`
	images.Progress
}

// CheckResult is what MethodCheck returns.
type CheckResult struct {
	Drift []Drift `json:"drift"`
}

// machineSide is what the RPC server serves; *Helper is one.
type machineSide interface {
	PublicKey() (string, error)
	Apply(ctx context.Context, spec Spec) (Report, error)
	Check(ctx context.Context, spec Spec) ([]Drift, error)
	Remove(ctx context.Context) error
	Facts(ctx context.Context) (Facts, error)
	CreateVM(ctx context.Context, req VMRequest, progress func(images.Progress)) (vm.Info, error)
	ListVMs(ctx context.Context) ([]vm.Info, error)
	VMAction(ctx context.Context, a VMActionRequest) (VMActionResult, error)
	Images(ctx context.Context) ([]images.Image, error)
	WatchVMs(ctx context.Context) (<-chan vm.Event, error)
}

// handler answers JSON-RPC calls with m.
func handler(m machineSide, log *slog.Logger) jsonrpc2.Handler {
	w := &watches{m: m, subs: map[*jsonrpc2.Conn]*subscription{}}
	h := jsonrpc2.HandlerWithError(func(ctx context.Context, conn *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
		params := func(v any) error {
			if req.Params == nil {
				return &jsonrpc2.Error{Code: jsonrpc2.CodeInvalidParams, Message: req.Method + ": missing params"}
			}
			dec := json.NewDecoder(bytesReader(*req.Params))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				return &jsonrpc2.Error{Code: jsonrpc2.CodeInvalidParams, Message: req.Method + ": " + err.Error()}
			}
			return nil
		}
		log.Debug("call", "method", req.Method)
		switch req.Method {
		case MethodPublicKey:
			return m.PublicKey()
		case MethodApply:
			var s Spec
			if err := params(&s); err != nil {
				return nil, err
			}
			rep, err := m.Apply(ctx, s)
			if err != nil {
				return nil, err
			}
			return rep, nil
		case MethodCheck:
			var s Spec
			if err := params(&s); err != nil {
				return nil, err
			}
			d, err := m.Check(ctx, s)
			return CheckResult{Drift: d}, err
		case MethodRemove:
			return struct{}{}, m.Remove(ctx)
		case MethodFacts:
			return m.Facts(ctx)
		case MethodVMCreate:
			var r VMRequest
			if err := params(&r); err != nil {
				return nil, err
			}
			return m.CreateVM(ctx, r, func(p images.Progress) {
				_ = conn.Notify(ctx, NotifyProgress, ProgressEvent{VM: r.Name, Progress: p})
			})
		case MethodVMList:
			return m.ListVMs(ctx)
		case MethodVMAction:
			var a VMActionRequest
			if err := params(&a); err != nil {
				return nil, err
			}
			return m.VMAction(ctx, a)
		case MethodImages:
			return m.Images(ctx)
		case MethodWatch:
			return struct{}{}, w.watch(ctx, conn)
		case MethodUnwatch:
			w.unwatch(conn)
			return struct{}{}, nil
		}
		return nil, &jsonrpc2.Error{Code: jsonrpc2.CodeMethodNotFound, Message: "no method " + req.Method}
	})
	return jsonrpc2.AsyncHandler(h)
}

// watches are the connections subscribed to VM events.
type watches struct {
	m    machineSide
	mu   sync.Mutex
	subs map[*jsonrpc2.Conn]*subscription
}

type subscription struct{ cancel context.CancelFunc }

// watch subscribes conn, then pushes the VMs there are and every change
// to them until unwatch, the connection closes or ctx ends.
func (w *watches) watch(ctx context.Context, conn *jsonrpc2.Conn) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[conn] != nil {
		return errors.New("this connection already watches VM events")
	}
	ctx, cancel := context.WithCancel(ctx)
	events, err := w.m.WatchVMs(ctx)
	if err != nil {
		cancel()
		return err
	}
	sub := &subscription{cancel: cancel}
	w.subs[conn] = sub
	go func() {
		defer w.end(conn, sub)
		select {
		case <-conn.DisconnectNotify():
		case <-ctx.Done():
		}
	}()
	go func() {
		defer w.end(conn, sub)
		// Subscribed first, listed second: no change falls between.
		vms, err := w.m.ListVMs(ctx)
		for _, v := range vms {
			_ = conn.Notify(ctx, NotifyEvent, vm.Event{VM: v.Name, Event: EventPresent, State: v.State})
		}
		for err == nil {
			select {
			case ev, ok := <-events:
				if !ok {
					err = errors.New("libvirtd hung up")
					break
				}
				err = conn.Notify(ctx, NotifyEvent, ev)
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			_ = conn.Notify(ctx, NotifyWatchEnded, WatchEnded{Error: "vm events: " + err.Error()})
		}
	}()
	return nil
}

// unwatch ends conn's subscription, if it has one.
func (w *watches) unwatch(conn *jsonrpc2.Conn) {
	w.mu.Lock()
	sub := w.subs[conn]
	w.mu.Unlock()
	if sub != nil {
		w.end(conn, sub)
	}
}

// end ends sub, which conn may have replaced with a newer one since.
func (w *watches) end(conn *jsonrpc2.Conn, sub *subscription) {
	sub.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[conn] == sub {
		delete(w.subs, conn)
	}
}

// Serve answers calls on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, m machineSide, log *slog.Logger) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	h := handler(m, log)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		conn := jsonrpc2.NewConn(ctx, jsonrpc2.NewPlainObjectStream(c), h)
		go func() {
			select {
			case <-conn.DisconnectNotify():
			case <-ctx.Done():
				conn.Close()
			}
		}()
	}
}

// ListenSocket listens on a unix socket only root can use, replacing a
// stale socket file that nothing answers on.
func ListenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("make socket folder: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: another helper daemon answers there; stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Client calls a helper daemon.
type Client struct {
	conn *jsonrpc2.Conn

	mu       sync.Mutex
	progress map[string]func(images.Progress) // by VM name
	watch    *watcher
}

// watcher is a Watch in progress.
type watcher struct {
	fn    func(vm.Event)
	ended chan string // the daemon's reason
}

// Dial connects to the helper daemon's socket.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("reach the helper daemon at %s (is `butter helper daemon` running?): %w", path, err)
	}
	return NewClient(ctx, c), nil
}

// NewClient speaks the helper protocol over rwc.
func NewClient(ctx context.Context, rwc net.Conn) *Client {
	c := &Client{progress: map[string]func(images.Progress){}}
	c.conn = jsonrpc2.NewConn(ctx, jsonrpc2.NewPlainObjectStream(rwc), jsonrpc2.HandlerWithError(c.notified))
	return c
}

// notified takes the daemon's pushed notifications.
func (c *Client) notified(ctx context.Context, _ *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
	if req.Params == nil {
		return nil, nil
	}
	switch req.Method {
	case NotifyProgress:
		var ev ProgressEvent
		if err := json.Unmarshal(*req.Params, &ev); err != nil {
			return nil, nil
		}
		c.mu.Lock()
		fn := c.progress[ev.VM]
		c.mu.Unlock()
		if fn != nil {
			fn(ev.Progress)
		}
	case NotifyEvent:
		var ev vm.Event
		if err := json.Unmarshal(*req.Params, &ev); err != nil {
			return nil, nil
		}
		c.mu.Lock()
		w := c.watch
		c.mu.Unlock()
		if w != nil {
			w.fn(ev)
		}
	case NotifyWatchEnded:
		var end WatchEnded
		if err := json.Unmarshal(*req.Params, &end); err != nil {
			return nil, nil
		}
		c.mu.Lock()
		w := c.watch
		c.mu.Unlock()
		if w != nil {
			select {
			case w.ended <- end.Error:
			default:
			}
		}
	}
	return nil, nil
}

// Close hangs up.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context, method string, params, result any) error {
	if err := c.conn.Call(ctx, method, params, result); err != nil {
		var rerr *jsonrpc2.Error
		if errors.As(err, &rerr) {
			return errors.New(rerr.Message)
		}
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

// PublicKey asks for the machine's WireGuard public key.
func (c *Client) PublicKey(ctx context.Context) (string, error) {
	var k string
	return k, c.call(ctx, MethodPublicKey, nil, &k)
}

// Apply sends spec to be applied.
func (c *Client) Apply(ctx context.Context, spec Spec) (Report, error) {
	var r Report
	return r, c.call(ctx, MethodApply, spec, &r)
}

// Check asks how the machine differs from spec.
func (c *Client) Check(ctx context.Context, spec Spec) ([]Drift, error) {
	var r CheckResult
	return r.Drift, c.call(ctx, MethodCheck, spec, &r)
}

// Remove tears the machine's chain down.
func (c *Client) Remove(ctx context.Context) error {
	return c.call(ctx, MethodRemove, nil, nil)
}

// Facts asks for capabilities and live mesh state.
func (c *Client) Facts(ctx context.Context) (Facts, error) {
	var f Facts
	return f, c.call(ctx, MethodFacts, nil, &f)
}

// CreateVM asks for a VM; progress, if not nil, hears how its image moves.
func (c *Client) CreateVM(ctx context.Context, req VMRequest, progress func(images.Progress)) (vm.Info, error) {
	if progress != nil {
		c.mu.Lock()
		c.progress[req.Name] = progress
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.progress, req.Name)
			c.mu.Unlock()
		}()
	}
	var info vm.Info
	return info, c.call(ctx, MethodVMCreate, req, &info)
}

// ListVMs lists the machine's VMs.
func (c *Client) ListVMs(ctx context.Context) ([]vm.Info, error) {
	var vms []vm.Info
	return vms, c.call(ctx, MethodVMList, nil, &vms)
}

// VMAction starts, stops, reboots or removes a VM.
func (c *Client) VMAction(ctx context.Context, a VMActionRequest) (VMActionResult, error) {
	var r VMActionResult
	return r, c.call(ctx, MethodVMAction, a, &r)
}

// Images lists the machine's cached images.
func (c *Client) Images(ctx context.Context) ([]images.Image, error) {
	var imgs []images.Image
	return imgs, c.call(ctx, MethodImages, nil, &imgs)
}

// Watch calls fn with the machine's VM lifecycle events until ctx ends
// (Watch then returns nil), the daemon stops streaming or the connection
// closes. fn first hears one EventPresent per VM there is, then every
// change, in order; it runs on the connection's reading goroutine, so it
// must return quickly and must not call the daemon. One Watch at a time
// per Client.
func (c *Client) Watch(ctx context.Context, fn func(vm.Event)) error {
	w := &watcher{fn: fn, ended: make(chan string, 1)}
	c.mu.Lock()
	if c.watch != nil {
		c.mu.Unlock()
		return errors.New("watch vm events: this client already watches")
	}
	c.watch = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.watch = nil
		c.mu.Unlock()
	}()
	if err := c.call(ctx, MethodWatch, nil, nil); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		// Best effort: the connection may be going away too.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = c.call(uctx, MethodUnwatch, nil, nil)
		return nil
	case reason := <-w.ended:
		return errors.New(reason)
	case <-c.conn.DisconnectNotify():
		return errors.New("watch vm events: the helper daemon hung up")
	}
}
