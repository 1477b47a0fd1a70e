package holder

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Dialer reaches the holder on Socket, starting one when none answers.
type Dialer struct {
	Socket string
	// Start launches a holder on Socket; called at most once, when no
	// holder answers. Nil: none is started.
	Start func(ctx context.Context) error
	// Wait bounds the wait for a started holder to answer; default 2 s.
	Wait time.Duration

	once     sync.Once
	startErr error
}

// AnswerError is the holder's refusal.
type AnswerError struct{ Answer Answer }

func (e *AnswerError) Error() string { return "holder: " + e.Answer.Error }

// connect reaches the holder, starting it if none answers.
func (d *Dialer) connect(ctx context.Context) (*net.UnixConn, error) {
	c, err := d.dial(ctx)
	if err == nil || d.Start == nil {
		return c, err
	}
	d.once.Do(func() { d.startErr = d.Start(ctx) })
	if d.startErr != nil {
		return nil, fmt.Errorf("start the holder: %w", d.startErr)
	}
	wait := d.Wait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		c, err := d.dial(ctx)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the holder started but does not answer on %s: %w", d.Socket, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (d *Dialer) dial(ctx context.Context) (*net.UnixConn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "unix", d.Socket)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	// The holder must be this user's, as the holder checks the verb.
	if uid, err := peerUID(uc); err != nil || uid != os.Getuid() {
		uc.Close()
		return nil, fmt.Errorf("holder on %s: peer uid %d is not %d (%v)", d.Socket, uid, os.Getuid(), err)
	}
	return uc, nil
}

// ask sends req and reads the answer.
func (d *Dialer) ask(ctx context.Context, req Request) (*bufConn, Answer, error) {
	c, err := d.connect(ctx)
	if err != nil {
		return nil, Answer{}, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	r := bufio.NewReaderSize(c, 64<<10)
	var a Answer
	if err := writeLine(c, req); err != nil {
		c.Close()
		return nil, a, fmt.Errorf("holder: %w", err)
	}
	if err := readLine(r, &a); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, a, ctx.Err()
		}
		return nil, a, fmt.Errorf("holder: %w", err)
	}
	if a.Error != "" {
		c.Close()
		return nil, a, &AnswerError{Answer: a}
	}
	return &bufConn{UnixConn: c, r: r}, a, nil
}

// Ping tells whether a holder answers (without starting one).
func (d *Dialer) Ping(ctx context.Context) error {
	c, err := d.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := writeLine(c, Request{Op: OpPing}); err != nil {
		return err
	}
	var a Answer
	if err := readLine(bufio.NewReader(c), &a); err != nil {
		return err
	}
	if a.Error != "" {
		return &AnswerError{Answer: a}
	}
	return nil
}

// Serve opens a stream to req's machine's helper protocol, past its hello:
// a net.Conn for helperapi.NewClient. Closing it ends the serve session.
func (d *Dialer) Serve(ctx context.Context, req Request) (net.Conn, Answer, error) {
	req.Op = OpServe
	c, a, err := d.ask(ctx, req)
	if err != nil {
		return nil, a, err
	}
	return c, a, nil
}

// Exec runs req's command (Line, Root) on its machine through the holder:
// stdin feeds it (nil: nothing), its output goes to stdout and stderr (nil:
// discarded). The error is the command's.
func (d *Dialer) Exec(ctx context.Context, req Request, stdin io.Reader, stdout, stderr io.Writer) (Answer, error) {
	req.Op = OpExec
	c, a, err := d.ask(ctx, req)
	if err != nil {
		return a, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var mu sync.Mutex
	go func() {
		// Standard input, then its end; a failed write ends with c.
		if stdin != nil {
			w := &lockedWriter{mu: &mu, w: c}
			if _, err := io.Copy(&frameWriter{w: w, typ: frameStdin}, stdin); err != nil {
				return
			}
		}
		mu.Lock()
		_ = writeFrame(c, frameStdinEnd, nil)
		mu.Unlock()
	}()
	for {
		typ, data, err := readFrame(c)
		if err != nil {
			if ctx.Err() != nil {
				return a, ctx.Err()
			}
			return a, fmt.Errorf("holder: %s on %s: %w", req.Line, req.Machine, err)
		}
		switch typ {
		case frameStdout:
			if stdout != nil {
				stdout.Write(data)
			}
		case frameStderr:
			if stderr != nil {
				stderr.Write(data)
			}
		case frameExit:
			var x ExitFrame
			if err := json.Unmarshal(data, &x); err != nil {
				return a, fmt.Errorf("holder: exit frame: %w", err)
			}
			if x.Error != "" {
				return a, errors.New(x.Error)
			}
			return a, nil
		}
	}
}
