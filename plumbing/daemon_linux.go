package plumbing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/vm"
	"golang.org/x/sys/unix"
)

// RunDaemon is `butter helper daemon`: it restores the applied spec, keeps
// a userspace WireGuard device alive where the kernel has none, and serves
// calls on the socket until ctx ends. Only one daemon runs per state folder.
func RunDaemon(ctx context.Context, o DaemonOptions) error {
	if o.StateDir == "" {
		o.StateDir = helperapi.DefaultStateDir
	}
	if o.Socket == "" {
		o.Socket = helperapi.DefaultSocket
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	unlock, err := lockDir(o.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	// KVM is proven now, in the background (machine add starts the
	// daemon), so no vm create waits for a proof.
	o.VM.Probe = vm.StartKVMProbe(ctx, o.VM, o.Log)
	h, err := New(Options{StateDir: o.StateDir, Log: o.Log, VM: o.VM, ImageMirror: o.ImageMirror})
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := ListenSocket(o.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(o.Socket)

	restored := make(chan struct{})
	go func() {
		defer close(restored)
		// What the kernel can make is probed first: its links load
		// kernel modules (WireGuard's runs its crypto self-tests), seconds
		// on a slow machine, which the first prepare would wait for.
		h.links.capabilities()
		restore(ctx, h, o.Log)
		h.startVMsAtBoot(ctx, o.Log)
	}()
	// The VM manager is opened ahead of the first vm create (libvirt's
	// connection, the storage pools, the KVM verdict); where libvirtd is
	// not up yet, the first create opens it instead.
	go func() {
		if _, err := h.vmManager(ctx); err != nil {
			o.Log.Debug("vm manager not opened ahead", "err", err)
		}
	}()
	probing := make(chan struct{})
	pctx, stopProbes := context.WithCancel(ctx)
	go func() {
		defer close(probing)
		h.probeLoop(pctx)
	}()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if err := watchPorts(ctx, o.Log); err != nil {
			o.Log.Error("ports keep IPv6 until the next apply", "err", err)
		}
	}()
	o.Log.Info("helper daemon listening", "socket", o.Socket)
	err = Serve(ctx, l, h, o.Log)
	stopProbes()
	<-restored
	<-probing
	<-watched
	return err
}

// restore re-applies the persisted spec, retrying with backoff while it
// fails (a peer's name may not resolve yet at boot).
func restore(ctx context.Context, h *Helper, log *slog.Logger) {
	wait := time.Second
	for {
		rep, ok, err := h.Restore(ctx)
		switch {
		case err == nil && ok:
			log.Info("restored applied spec", "changes", len(rep.Changes))
			return
		case err == nil:
			log.Info("no applied spec to restore")
			return
		}
		log.Error("restore applied spec", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Minute)
	}
}

// lockDir takes an exclusive lock on the state folder for this process.
func lockDir(dir string) (func(), error) {
	if err := ensureStateDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "daemon.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another helper daemon holds %s; stop it first: %w", path, err)
	}
	return func() { f.Close() }, nil
}
