package holder

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/butter-cloud/butter/remote"
)

// DefaultIdle is how long a holder lives with nothing to do.
const DefaultIdle = 5 * time.Minute

// Server holds machines' SSH connections for the verbs that ask.
type Server struct {
	// Idle is how long the server runs with no verb connected; it closes
	// every held connection and returns then. Zero: DefaultIdle.
	Idle time.Duration
	// Log records dials, reuses and refusals; nil: none.
	Log *slog.Logger

	mu       sync.Mutex
	machines map[string]*slot // by machine name
	active   int              // connections being served
	last     time.Time        // when the last one ended (or the start)
	dials    int
}

// slot is one machine's held connection; mu is held while dialing or
// checking it.
type slot struct {
	mu   sync.Mutex
	held *held
}

type held struct {
	key    string
	c      *remote.Client
	helper remote.Helper

	// spare is a serve stream opened ahead, past its hello, for the next
	// verb: it saves that verb the helper's start on the machine.
	mu      sync.Mutex
	spare   *remote.ServeStream
	warming bool
	ready   chan struct{} // closed when the spare on its way is there (or failed)
	gone    bool
}

// take is the spare stream if it is still open, else nil. A spare on its
// way is waited for (until ctx ends): it is further along than a stream
// opened now would be.
func (h *held) take(ctx context.Context) *remote.ServeStream {
	h.mu.Lock()
	if h.warming {
		ready := h.ready
		h.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
		h.mu.Lock()
	}
	defer h.mu.Unlock()
	st := h.spare
	h.spare = nil
	if st != nil && st.Ended() {
		st.Close()
		return nil
	}
	return st
}

// warm opens the next spare stream in the background, unless one is
// there or on its way.
func (h *held) warm(log *slog.Logger) {
	h.mu.Lock()
	if h.spare != nil || h.warming || h.gone {
		h.mu.Unlock()
		return
	}
	h.warming = true
	h.ready = make(chan struct{})
	h.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := h.c.OpenServe(ctx, h.helper)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.warming = false
		close(h.ready)
		if err != nil {
			log.Info("holder: no spare stream", "host", h.c.Host, "error", err.Error())
			return
		}
		if h.gone || h.spare != nil {
			st.Close()
			return
		}
		h.spare = st
	}()
}

// close closes the connection and its spare.
func (h *held) close() {
	h.mu.Lock()
	h.gone = true
	if h.spare != nil {
		h.spare.Close()
		h.spare = nil
	}
	h.mu.Unlock()
	h.c.Close()
}

// Dials is how many SSH connections the server has made.
func (s *Server) Dials() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dials
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Serve answers verbs on ln until ctx ends or the server has been idle for
// Idle; then it closes ln and every held connection.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	idle := s.Idle
	if idle <= 0 {
		idle = DefaultIdle
	}
	s.mu.Lock()
	if s.machines == nil {
		s.machines = map[string]*slot{}
	}
	s.last = time.Now()
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		// Closing the connections ends the verbs' streams, so their
		// handlers return.
		ln.Close()
		cancel()
		s.closeAll()
		wg.Wait()
	}()
	go func() {
		// The idle watch: ends Serve by closing ln.
		t := time.NewTicker(min(idle/4+time.Millisecond, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				ln.Close()
				return
			case <-t.C:
			}
			s.mu.Lock()
			quiet := s.active == 0 && time.Since(s.last) >= idle
			s.mu.Unlock()
			if quiet {
				s.log().Info("holder idle; exiting", "idle", idle)
				ln.Close()
				return
			}
		}
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("holder: %w", err)
		}
		s.mu.Lock()
		s.active++
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				s.active--
				s.last = time.Now()
				s.mu.Unlock()
			}()
			s.handle(ctx, c)
		}()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, sl := range s.machines {
		if sl.held != nil {
			sl.held.close()
			sl.held = nil
		}
		delete(s.machines, name)
	}
}

// handle serves one verb's connection.
func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	uid, err := peerUID(c)
	if err != nil || uid != os.Getuid() {
		s.log().Warn("holder refused a connection", "peer_uid", uid, "error", err)
		_ = writeLine(c, Answer{Error: fmt.Sprintf("refused: the holder serves uid %d only", os.Getuid()), Kind: KindFailed})
		return
	}
	r := bufio.NewReaderSize(c, 64<<10)
	var req Request
	if err := readLine(r, &req); err != nil {
		return
	}
	// The verb's connection closing ends what it asked for.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if req.Op == OpPing {
		_ = writeLine(c, Answer{})
		return
	}
	h, reused, err := s.get(ctx, req)
	if err != nil {
		a := Answer{Error: err.Error(), Kind: KindFailed}
		var ue *remote.UnreachableError
		if errors.As(err, &ue) {
			a.Kind, a.Timeout, a.Addr, a.Cause = KindUnreachable, ue.Timeout, ue.Addr, fmt.Sprint(ue.Err)
			var ne net.Error
			a.TimedOut = errors.As(ue.Err, &ne) && ne.Timeout()
		}
		_ = writeLine(c, a)
		return
	}
	a := Answer{Reused: reused, Addr: h.c.RemoteIP(), Jumped: h.c.Jumped(), User: h.c.User,
		Version: h.helper.Version, Path: h.helper.Path}
	in := &bufConn{UnixConn: c, r: r}
	switch req.Op {
	case OpServe:
		st := h.take(ctx)
		if a.Spare = st != nil; st == nil {
			st, err = h.c.OpenServe(ctx, h.helper)
		}
		h.warm(s.log())
		if err != nil {
			// A helper that does not match, or a connection that just
			// broke: the verb dials itself (and installs as needed).
			s.drop(req.Machine, h)
			_ = writeLine(c, Answer{Error: err.Error(), Kind: KindFailed})
			return
		}
		if err := writeLine(c, a); err != nil {
			st.Close()
			return
		}
		splice(in, st)
	case OpExec:
		if err := writeLine(c, a); err != nil {
			return
		}
		s.exec(ctx, in, h, req)
	default:
		_ = writeLine(c, Answer{Error: fmt.Sprintf("unknown op %q", req.Op), Kind: KindFailed})
	}
}

// get is the held connection for req, dialed now if there is none, it
// closed, or req reaches or trusts the machine differently.
func (s *Server) get(ctx context.Context, req Request) (*held, bool, error) {
	key, err := connKey(req)
	if err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	sl := s.machines[req.Machine]
	if sl == nil {
		sl = &slot{}
		s.machines[req.Machine] = sl
	}
	s.mu.Unlock()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if h := sl.held; h != nil {
		why := "connection closed"
		if h.key != key {
			why = "machine entry or host keys changed"
		} else if h.c.Alive() {
			// A machine whose cable was pulled keeps a connection that
			// looks open: it must answer a keepalive within the connect
			// timeout, or it is away.
			err := h.c.Ping(ctx, connectTimeout(req))
			if err == nil {
				s.log().Info("holder reuses", "machine", req.Machine, "host", req.Host)
				return h, true, nil
			}
			h.close()
			sl.held = nil
			var ue *remote.UnreachableError
			if errors.As(err, &ue) || ctx.Err() != nil {
				s.log().Info("holder drops", "machine", req.Machine, "why", err.Error())
				return nil, false, err
			}
			why = err.Error()
		}
		s.log().Info("holder drops", "machine", req.Machine, "why", why)
		h.close()
		sl.held = nil
	}
	opts := req.Dial.Options()
	opts.Log = s.Log
	c, err := remote.Dial(ctx, req.Host, opts)
	s.mu.Lock()
	s.dials++
	s.mu.Unlock()
	if err != nil {
		s.log().Info("holder dial failed", "machine", req.Machine, "error", err.Error())
		return nil, false, err
	}
	hp, err := c.ExpectedHelper(ctx, req.Helpers)
	if err != nil {
		c.Close()
		return nil, false, err
	}
	sl.held = &held{key: key, c: c, helper: hp}
	s.log().Info("holder dialed", "machine", req.Machine, "host", req.Host, "version", hp.Version)
	return sl.held, false, nil
}

// connectTimeout is req's connect timeout, remote.Dial's default if none.
func connectTimeout(req Request) time.Duration {
	if req.Dial.ConnectTimeout > 0 {
		return req.Dial.ConnectTimeout
	}
	return 15 * time.Second
}

// drop forgets h if it is still machine's held connection.
func (s *Server) drop(machine string, h *held) {
	s.mu.Lock()
	sl := s.machines[machine]
	s.mu.Unlock()
	if sl == nil {
		return
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.held == h {
		h.close()
		sl.held = nil
	}
}

// exec runs req's command on h, its streams framed over c.
func (s *Server) exec(ctx context.Context, c *bufConn, h *held, req Request) {
	stdin, feed := io.Pipe()
	go func() {
		// The verb's frames: standard input until its end. A verb that
		// hangs up ends the command.
		for {
			typ, data, err := readFrame(c)
			if err != nil {
				feed.CloseWithError(err)
				return
			}
			switch typ {
			case frameStdin:
				if _, err := feed.Write(data); err != nil {
					return
				}
			case frameStdinEnd:
				feed.Close()
			}
		}
	}()
	var mu sync.Mutex // one frame at a time
	w := &lockedWriter{mu: &mu, w: c}
	err := h.c.Run(ctx, remote.Cmd{Line: req.Line, Root: req.Root, Stdin: stdin,
		Stdout: &frameWriter{w: w, typ: frameStdout}, Stderr: &frameWriter{w: w, typ: frameStderr}})
	var x ExitFrame
	if err != nil {
		x.Error = err.Error()
	}
	b, _ := json.Marshal(x)
	mu.Lock()
	_ = writeFrame(c, frameExit, b)
	mu.Unlock()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// bufConn reads through the buffer the request line was read with.
type bufConn struct {
	*net.UnixConn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// splice copies both ways until either side ends, then closes both.
func splice(a io.ReadWriteCloser, b io.ReadWriteCloser) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(a, b); done <- struct{}{} }()
	go func() { io.Copy(b, a); done <- struct{}{} }()
	<-done
	a.Close()
	b.Close()
	<-done
}
