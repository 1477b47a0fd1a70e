package helperapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"

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
	// MethodPrepare checks a spec as Apply would (validation, this
	// machine's own key, the generation) and changes nothing: the first
	// phase of a change, so bad input never moves a machine.
	MethodPrepare = "helper.prepare"
	// MethodRotateKey makes a new WireGuard key on the machine, puts it to
	// use at once and returns the new public key.
	MethodRotateKey = "helper.rotate_key"
	// MethodDesired returns the cloud's desired state the machine keeps
	// (zero when it has none).
	MethodDesired = "helper.desired"
	// MethodWatch subscribes the connection to VM lifecycle events: the
	// daemon pushes NotifyEvent for every VM there is (event "present"),
	// then for every change, until MethodUnwatch or the connection closes.
	MethodWatch   = "helper.watch"
	MethodUnwatch = "helper.unwatch"

	// NotifyProgress is pushed to the caller while an image moves.
	NotifyProgress = "helper.progress"
	// NotifyEvent carries a VMEvent to a watching connection.
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
	Progress
}

// Client calls a helper daemon.
type Client struct {
	conn   *jsonrpc2.Conn
	stream *Stream

	mu       sync.Mutex
	progress map[string]func(Progress) // by VM name
	watch    *watcher
	observe  func(method string, took time.Duration, err error)
}

// Observe has fn told of every call when it has ended: its method, how
// long it took and its error (for the operator's log; never the params,
// which can carry a VM's user data).
func (c *Client) Observe(fn func(method string, took time.Duration, err error)) {
	c.mu.Lock()
	c.observe = fn
	c.mu.Unlock()
}

// watcher is a Watch in progress.
type watcher struct {
	fn    func(VMEvent)
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
	c := &Client{progress: map[string]func(Progress){}, stream: NewStream(rwc, MaxMessageSize)}
	// jsonrpc2 logs a protocol error to standard error by default: the
	// call that fails says it instead (see call).
	c.conn = jsonrpc2.NewConn(ctx, c.stream, jsonrpc2.HandlerWithError(c.notified),
		jsonrpc2.SetLogger(log.New(io.Discard, "", 0)))
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
		var ev VMEvent
		if err := json.Unmarshal(*req.Params, &ev); err != nil {
			return nil, nil
		}
		if w := c.watching(); w != nil {
			w.fn(ev)
		}
	case NotifyWatchEnded:
		var end WatchEnded
		if err := json.Unmarshal(*req.Params, &end); err != nil {
			return nil, nil
		}
		if w := c.watching(); w != nil {
			select {
			case w.ended <- end.Error:
			default:
			}
		}
	}
	return nil, nil
}

// watching is the watch of VM events under way, nil if none.
func (c *Client) watching() *watcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch
}

// Close hangs up.
func (c *Client) Close() error { return c.conn.Close() }

// Done is closed when the connection has closed.
func (c *Client) Done() <-chan struct{} { return c.conn.DisconnectNotify() }

func (c *Client) call(ctx context.Context, method string, params, result any) (err error) {
	c.mu.Lock()
	observe := c.observe
	c.mu.Unlock()
	if observe != nil {
		start := time.Now()
		defer func() { observe(method, time.Since(start), err) }()
	}
	if err := c.conn.Call(ctx, method, params, result); err != nil {
		var rerr *jsonrpc2.Error
		if errors.As(err, &rerr) {
			return &RemoteError{Code: rerr.Code, Message: rerr.Message}
		}
		if serr := c.stream.Err(); errors.Is(err, jsonrpc2.ErrClosed) && serr != nil && !errors.Is(serr, io.EOF) {
			// The connection closed because the helper sent what the
			// protocol refuses: say what, not just "closed".
			return fmt.Errorf("%s: the helper sent %w; the connection is closed", method, serr)
		}
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}

// Prepare checks spec as Apply would, changing nothing.
func (c *Client) Prepare(ctx context.Context, spec Spec) error {
	return c.call(ctx, MethodPrepare, spec, nil)
}

// RotateKey replaces the machine's WireGuard key and returns the new
// public key.
func (c *Client) RotateKey(ctx context.Context) (string, error) {
	var k string
	return k, c.call(ctx, MethodRotateKey, nil, &k)
}

// Desired returns the copy of the cloud's desired state the machine keeps.
func (c *Client) Desired(ctx context.Context) (Desired, error) {
	var d Desired
	return d, c.call(ctx, MethodDesired, nil, &d)
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
func (c *Client) CreateVM(ctx context.Context, req VMRequest, progress func(Progress)) (VMInfo, error) {
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
	var info VMInfo
	return info, c.call(ctx, MethodVMCreate, req, &info)
}

// ListVMs lists the machine's VMs.
func (c *Client) ListVMs(ctx context.Context) ([]VMInfo, error) {
	var vms []VMInfo
	return vms, c.call(ctx, MethodVMList, nil, &vms)
}

// VMAction starts, stops, reboots or removes a VM.
func (c *Client) VMAction(ctx context.Context, a VMActionRequest) (VMActionResult, error) {
	var r VMActionResult
	return r, c.call(ctx, MethodVMAction, a, &r)
}

// Images lists the machine's cached images.
func (c *Client) Images(ctx context.Context) ([]Image, error) {
	var imgs []Image
	return imgs, c.call(ctx, MethodImages, nil, &imgs)
}

// Watch calls fn with the machine's VM lifecycle events until ctx ends
// (Watch then returns nil), the daemon stops streaming or the connection
// closes. fn first hears one EventPresent per VM there is, then every
// change, in order; it runs on the connection's reading goroutine, so it
// must return quickly and must not call the daemon. One Watch at a time
// per Client.
func (c *Client) Watch(ctx context.Context, fn func(VMEvent)) error {
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
	if err := c.call(ctx, MethodWatch, nil, nil); err != nil && ctx.Err() == nil {
		return err
	}
	// A ctx that ended while the answer was on its way (the events can
	// come before it) ends the watch as one that ended after it.
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
