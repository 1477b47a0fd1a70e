package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/remote"
	"github.com/sourcegraph/jsonrpc2"
)

// AwayError is a verb that needs a machine butter cannot reach: the
// machine is off, its network is down, or it does not answer in time.
// Its message names the machine, the reason and what to do.
type AwayError struct {
	Machine string
	Verb    string // what needs the machine, such as "vm create"
	Next    string // what to do about it
	Err     error  // the connection's failure
}

func (e *AwayError) Error() string {
	return fmt.Sprintf("machine %s is away (%v): %s needs it; %s", e.Machine, e.Err, e.Verb, e.Next)
}

func (e *AwayError) Unwrap() error { return e.Err }

// onMachine names machine in err, a failure to reach or use it for verb.
// When the machine could not be reached at all, it is an *AwayError
// saying what to do next; a cancelled ctx is no machine's fault.
func onMachine(ctx context.Context, machine, verb, next string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
		if unreachable(err) {
			return &AwayError{Machine: machine, Verb: verb, Next: next, Err: err}
		}
	}
	return fmt.Errorf("machine %q: %w", machine, err)
}

// unreachable tells whether err is a failure to reach a machine: to
// connect, or to keep a connection; not a refusal from a machine that
// answered (a host key, a login, a helper's error).
func unreachable(err error) bool {
	var ue *remote.UnreachableError
	var ne net.Error
	var oce *ssh.OpenChannelError
	switch {
	case errors.As(err, &ue): // the TCP connect failed
		return true
	case errors.As(err, &ne): // dial, DNS, timeouts, resets
		return true
	case errors.As(err, &oce): // a jump host could not reach it
		return oce.Reason == ssh.ConnectionFailed
	}
	for _, target := range []error{context.DeadlineExceeded, remote.ErrClosed, jsonrpc2.ErrClosed, io.EOF, io.ErrUnexpectedEOF,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
