package cloud

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// DefaultWatchInterval is how often Watch refreshes each machine's facts
// (health, handshakes) and VM figures when not told otherwise.
const DefaultWatchInterval = 3 * time.Second

// Event is one change Watch reports. Exactly one of Inventory, Machine,
// VMs (with VMsOf) and VM is set.
type Event struct {
	At time.Time
	// Inventory is the inventory as (re)loaded; InventoryErr says why it
	// could not be read.
	Inventory    *inventory.Inventory
	InventoryErr error
	// Machine is a machine's refreshed status, answering or not.
	Machine *MachineStatus
	// VMs is the full list of VMsOf's VMs (after connecting, and on every
	// refresh); an empty list with VMsOf set means it has none.
	VMsOf string
	VMs   []VMStatus
	// VM is one change pushed by a helper.
	VM *VMChange
}

// VMChange is a VM lifecycle event pushed by a machine's helper.
type VMChange struct {
	Machine string
	Name    string
	Event   string // present, defined, started, stopped, undefined, …
	State   string
}

// vmWatcher is a helper that pushes VM events; *helperapi.Client is one.
type vmWatcher interface {
	Watch(ctx context.Context, fn func(helperapi.VMEvent)) error
}

// Watch reports the cloud's changes to fn until ctx ends, then returns
// nil. It reports the inventory first, then for every machine (in
// parallel, each on its own): its status and its VMs as soon as it
// answers, every VM event its helper pushes, and its facts and VM list
// again every interval (≤0: DefaultWatchInterval), so a machine that stops
// answering is reported offline within about two intervals while the rest
// keep reporting. Machines added to or removed from the inventory are
// picked up at the next interval. fn is called from one goroutine at a
// time and should return quickly.
func (c *Cloud) Watch(ctx context.Context, interval time.Duration, fn func(Event)) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	var mu sync.Mutex
	emit := func(ev Event) {
		if ctx.Err() != nil {
			return
		}
		ev.At = time.Now()
		mu.Lock()
		defer mu.Unlock()
		fn(ev)
	}
	type running struct {
		m      inventory.Machine
		cancel context.CancelFunc
	}
	loops := map[string]running{}
	var wg sync.WaitGroup
	defer func() {
		for _, r := range loops {
			r.cancel()
		}
		wg.Wait()
	}()

	var (
		current inventory.Inventory // guarded by invMu; read by the loops
		invMu   sync.Mutex
		seen    os.FileInfo // the file last loaded
		missing bool        // the file was missing at the last load
	)
	invNow := func() *inventory.Inventory {
		invMu.Lock()
		defer invMu.Unlock()
		return clone(&current)
	}
	reload := func() {
		fi, err := os.Stat(c.path)
		switch {
		case err == nil && seen != nil && os.SameFile(fi, seen) && fi.ModTime().Equal(seen.ModTime()) && fi.Size() == seen.Size():
			return
		case errors.Is(err, fs.ErrNotExist) && missing:
			return
		}
		seen, missing = fi, fi == nil
		inv, err := c.Inventory()
		if err != nil {
			emit(Event{InventoryErr: err})
			return
		}
		invMu.Lock()
		current = *clone(inv)
		invMu.Unlock()
		emit(Event{Inventory: inv})
		want := map[string]inventory.Machine{}
		for _, m := range inv.Machines {
			want[m.Name] = m
		}
		for name, r := range loops {
			if m, ok := want[name]; !ok || !sameMachine(m, r.m) {
				r.cancel()
				delete(loops, name)
			}
		}
		for name, m := range want {
			if _, ok := loops[name]; ok {
				continue
			}
			mctx, cancel := context.WithCancel(ctx)
			loops[name] = running{m: m, cancel: cancel}
			wg.Go(func() { c.watchMachine(mctx, m, invNow, interval, emit) })
		}
	}
	reload()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			reload()
		}
	}
}

func sameMachine(a, b inventory.Machine) bool {
	return a.Address == b.Address && a.Port == b.Port && a.User == b.User && a.Identity == b.Identity && a.Accel == b.Accel
}

// watchMachine reports one machine until ctx ends.
func (c *Cloud) watchMachine(ctx context.Context, m inventory.Machine, inv func() *inventory.Inventory, interval time.Duration, emit func(Event)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	relist := make(chan struct{}, 1)
	watchDone := make(chan struct{}, 1)
	var watching Helper // the helper whose events we hear
	var wg sync.WaitGroup
	wctx, stopWatch := context.WithCancel(ctx)
	defer func() {
		stopWatch()
		wg.Wait()
	}()
	for {
		st, h := c.probe(ctx, m, interval)
		if ctx.Err() != nil {
			return
		}
		emit(Event{Machine: &st})
		if h != nil {
			lctx, cancel := context.WithTimeout(ctx, interval)
			vms, err := h.ListVMs(lctx)
			cancel()
			if err == nil {
				out := make([]VMStatus, 0, len(vms))
				for _, v := range vms {
					out = append(out, vmStatus(m.Name, v))
				}
				emit(Event{VMsOf: m.Name, VMs: out})
			}
			if w, ok := h.(vmWatcher); ok && watching != h {
				// A new connection: hear its events (the old watch ended
				// with its connection).
				watching = h
				wg.Go(func() {
					defer func() {
						select {
						case watchDone <- struct{}{}:
						default:
						}
					}()
					_ = w.Watch(wctx, func(ev helperapi.VMEvent) {
						emit(Event{VM: &VMChange{Machine: m.Name, Name: ev.VM, Event: ev.Event, State: ev.State}})
						if ev.Event == "defined" {
							// A new VM: its network and address come with the list.
							select {
							case relist <- struct{}{}:
							default:
							}
						}
					})
				})
			}
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-relist:
		case <-watchDone:
			// Try again at the next refresh, not at once: a helper
			// without VM events must not be asked in a loop.
			watching = nil
			goto wait
		}
	}
}
