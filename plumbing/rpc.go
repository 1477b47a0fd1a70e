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

	"github.com/butter-cloud/butter/helperapi"
	"github.com/sourcegraph/jsonrpc2"
)

// machineSide is what the RPC server serves; *Helper is one.
type machineSide interface {
	PublicKey() (string, error)
	Apply(ctx context.Context, spec helperapi.Spec) (helperapi.Report, error)
	Prepare(ctx context.Context, spec helperapi.Spec) error
	RotateKey(ctx context.Context) (string, error)
	Desired(ctx context.Context) (helperapi.Desired, error)
	Check(ctx context.Context, spec helperapi.Spec) ([]helperapi.Drift, error)
	DryRun(ctx context.Context, req helperapi.DryRunRequest) (helperapi.DryRun, error)
	Remove(ctx context.Context) error
	Facts(ctx context.Context) (helperapi.Facts, error)
	CreateVM(ctx context.Context, req helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error)
	ListVMs(ctx context.Context) ([]helperapi.VMInfo, error)
	VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error)
	Images(ctx context.Context) ([]helperapi.Image, error)
	WatchVMs(ctx context.Context) (<-chan helperapi.VMEvent, error)
}

// handler answers JSON-RPC calls with m.
func handler(m machineSide, log *slog.Logger) jsonrpc2.Handler {
	w := &watches{m: m, subs: map[*jsonrpc2.Conn]*subscription{}}
	answer := func(ctx context.Context, conn *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
		params := func(v any) error { return decodeParams(req.Method, req.Params, v) }
		log.Debug("call", "method", req.Method)
		switch req.Method {
		case helperapi.MethodPublicKey:
			return m.PublicKey()
		case helperapi.MethodApply:
			var s helperapi.Spec
			if err := params(&s); err != nil {
				return nil, err
			}
			rep, err := m.Apply(ctx, s)
			if err != nil {
				return nil, err
			}
			return rep, nil
		case helperapi.MethodPrepare:
			var s helperapi.Spec
			if err := params(&s); err != nil {
				return nil, err
			}
			return struct{}{}, m.Prepare(ctx, s)
		case helperapi.MethodRotateKey:
			return m.RotateKey(ctx)
		case helperapi.MethodDesired:
			return m.Desired(ctx)
		case helperapi.MethodCheck:
			var s helperapi.Spec
			if err := params(&s); err != nil {
				return nil, err
			}
			d, err := m.Check(ctx, s)
			return helperapi.CheckResult{Drift: d}, err
		case helperapi.MethodDryRun:
			var r helperapi.DryRunRequest
			if err := params(&r); err != nil {
				return nil, err
			}
			if r.VM != nil {
				if err := helperapi.RefuseName("vm", r.VM.Name); err != nil {
					return nil, err
				}
			}
			return m.DryRun(ctx, r)
		case helperapi.MethodRemove:
			return struct{}{}, m.Remove(ctx)
		case helperapi.MethodFacts:
			return m.Facts(ctx)
		case helperapi.MethodVMCreate:
			var r helperapi.VMRequest
			if err := params(&r); err != nil {
				return nil, err
			}
			if err := r.WithDefaults().Check(); err != nil {
				return nil, &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: err.Error()}
			}
			return m.CreateVM(ctx, r, func(p helperapi.Progress) {
				_ = conn.Notify(ctx, helperapi.NotifyProgress, helperapi.ProgressEvent{VM: r.Name, Progress: p})
			})
		case helperapi.MethodVMList:
			return m.ListVMs(ctx)
		case helperapi.MethodVMAction:
			var a helperapi.VMActionRequest
			if err := params(&a); err != nil {
				return nil, err
			}
			if err := helperapi.RefuseName("vm", a.Name); err != nil {
				return nil, err
			}
			return m.VMAction(ctx, a)
		case helperapi.MethodImages:
			return m.Images(ctx)
		case helperapi.MethodWatch:
			return struct{}{}, w.watch(ctx, conn)
		case helperapi.MethodUnwatch:
			w.unwatch(conn)
			return struct{}{}, nil
		}
		return nil, &jsonrpc2.Error{Code: jsonrpc2.CodeMethodNotFound, Message: "no method " + req.Method}
	}
	h := jsonrpc2.HandlerWithError(func(ctx context.Context, conn *jsonrpc2.Conn, req *jsonrpc2.Request) (any, error) {
		res, err := answer(ctx, conn, req)
		return res, wireError(err)
	})
	return jsonrpc2.AsyncHandler(h)
}

// decodeParams decodes a request's params into v strictly (an unknown
// field is an error), with JSON-RPC's invalid-params code.
func decodeParams(method string, raw *json.RawMessage, v any) error {
	if raw == nil {
		return &jsonrpc2.Error{Code: jsonrpc2.CodeInvalidParams, Message: method + ": missing params"}
	}
	dec := json.NewDecoder(bytesReader(*raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &jsonrpc2.Error{Code: jsonrpc2.CodeInvalidParams, Message: method + ": " + err.Error()}
	}
	return nil
}

// wireError gives err its code on the wire: a *helperapi.RemoteError's
// (wrapped or not), so that the caller tells a refusal from a failure.
func wireError(err error) error {
	var je *jsonrpc2.Error
	var re *helperapi.RemoteError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &je):
		return je
	case errors.As(err, &re):
		return &jsonrpc2.Error{Code: re.Code, Message: err.Error()}
	}
	return err
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
			_ = conn.Notify(ctx, helperapi.NotifyEvent, helperapi.VMEvent{VM: v.Name, Event: helperapi.EventPresent, State: v.State})
		}
		for err == nil {
			select {
			case ev, ok := <-events:
				if !ok {
					err = errors.New("libvirtd hung up")
					break
				}
				err = conn.Notify(ctx, helperapi.NotifyEvent, ev)
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			_ = conn.Notify(ctx, helperapi.NotifyWatchEnded, helperapi.WatchEnded{Error: "vm events: " + err.Error()})
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
		stream := helperapi.NewStream(c, helperapi.MaxMessageSize)
		conn := jsonrpc2.NewConn(ctx, stream, h, jsonrpc2.SetLogger(slog.NewLogLogger(log.Handler(), slog.LevelWarn)))
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
