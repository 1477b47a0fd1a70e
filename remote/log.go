package remote

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// The operator's log: every dial and every command run on a machine, with
// how long it took and how it ended. What goes in is the command line as
// run, never its standard input (uploads, keys) or output, and never a
// key: private keys stay in files and the agent, and the command lines
// butter builds carry names, paths and public facts only.

// logLineMax bounds a command line in the log (scripts can be long).
const logLineMax = 2000

// discard is the logger of a DialOptions without one.
var discard = slog.New(slog.DiscardHandler)

func (o DialOptions) log() *slog.Logger {
	if o.Log == nil {
		return discard
	}
	return o.Log
}

// logDial records a dial of host (addr as dialed, through jumps hops).
func logDial(ctx context.Context, l *slog.Logger, host, addr, user string, jumps int, start time.Time, err error) {
	attrs := []slog.Attr{slog.String("host", host), slog.String("addr", addr), slog.String("user", user),
		slog.Duration("took", time.Since(start).Round(time.Millisecond))}
	if jumps > 0 {
		attrs = append(attrs, slog.Int("jumps", jumps))
	}
	if err != nil {
		l.LogAttrs(ctx, slog.LevelWarn, "ssh dial failed", append(attrs, slog.String("error", err.Error()))...)
		return
	}
	l.LogAttrs(ctx, slog.LevelInfo, "ssh dial", attrs...)
}

// logRun records a command run on c's machine and how it ended: exit 0,
// its exit status, or -1 without one (a signal, a lost connection).
func (c *Client) logRun(ctx context.Context, cmd Cmd, start time.Time, err error) {
	line := cmd.Line
	if len(line) > logLineMax {
		line = line[:logLineMax] + "…"
	}
	status := 0
	if err != nil {
		status = -1
		var re *RunError
		if errors.As(err, &re) {
			status = re.Status
		}
	}
	attrs := []slog.Attr{slog.String("host", c.Host), slog.String("command", line), slog.Bool("root", cmd.Root),
		slog.Duration("took", time.Since(start).Round(time.Millisecond)), slog.Int("exit", status)}
	if err != nil {
		c.opts.log().LogAttrs(ctx, slog.LevelWarn, "remote command failed", append(attrs, slog.String("error", err.Error()))...)
		return
	}
	c.opts.log().LogAttrs(ctx, slog.LevelInfo, "remote command", attrs...)
}
