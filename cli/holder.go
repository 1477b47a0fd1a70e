package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/butter-cloud/butter/holder"
	"github.com/spf13/cobra"
)

// HolderEnv turns the connection holder off ("off"); HolderIdleEnv sets how
// long it lives unused (a Go duration, default holder.DefaultIdle).
const (
	HolderEnv     = "BUTTER_HOLDER"
	HolderIdleEnv = "BUTTER_HOLDER_IDLE"
)

// holderCommand is `butter holder --socket PATH`: the background process
// that keeps machines' SSH connections for the verbs (package holder).
// Verbs start it; people need not.
func (s *session) holderCommand() *cobra.Command {
	var socket string
	var idle time.Duration
	cmd := &cobra.Command{
		Use:    "holder",
		Short:  "Keep machines' SSH connections open for the verbs (started by them)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if socket == "" {
				return usageErrorf("holder needs --socket")
			}
			ln, err := holder.Listen(socket)
			if err != nil {
				return err
			}
			mine, _ := os.Stat(socket)
			defer func() {
				// The socket goes with the holder, unless another took
				// its place.
				if now, err := os.Stat(socket); err == nil && mine != nil && os.SameFile(mine, now) {
					os.Remove(socket)
				}
			}()
			srv := &holder.Server{Idle: idle, Log: s.log.With("holder", os.Getpid())}
			s.log.Info("holder listening", "socket", socket, "idle", idle)
			return srv.Serve(cmd.Context(), ln)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "the unix `SOCKET` to listen on")
	cmd.Flags().DurationVar(&idle, "idle", holder.DefaultIdle, "exit after this long with no verb")
	return cmd
}

// holderFor is the holder for the inventory at path, started on first use;
// nil when $BUTTER_HOLDER is off or there can be none.
func (s *session) holderFor(path string) *holder.Dialer {
	if os.Getenv(HolderEnv) == "off" {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	socket, err := holder.Socket(path, exe)
	if err != nil {
		s.log.Info("holder not used", "error", err.Error())
		return nil
	}
	idle := holder.DefaultIdle
	if v := os.Getenv(HolderIdleEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			idle = d
		}
	}
	return &holder.Dialer{Socket: socket, Start: func(ctx context.Context) error {
		s.log.Info("starting the holder", "socket", socket, "idle", idle)
		// The holder starts no holder, whatever exe turns out to be.
		return holder.StartProcess(exe, []string{HolderEnv + "=off"}, "holder", "--socket", socket, "--idle", fmt.Sprint(idle))
	}}
}
