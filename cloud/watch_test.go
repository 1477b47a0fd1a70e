package cloud

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// flakyMachine is a fakeMachine that can stop answering and pushes VM
// events to whoever watches.
type flakyMachine struct {
	*fakeMachine
	down   atomic.Bool
	mu     sync.Mutex
	events chan helperapi.VMEvent
}

func (f *flakyMachine) Facts(ctx context.Context) (helperapi.Facts, error) {
	if f.down.Load() {
		<-ctx.Done()
		return helperapi.Facts{}, errors.New("helper.facts: " + ctx.Err().Error())
	}
	return f.fakeMachine.Facts(ctx)
}

func (f *flakyMachine) Watch(ctx context.Context, fn func(helperapi.VMEvent)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-f.events:
			fn(ev)
		}
	}
}

type flakyLink struct{ m *flakyMachine }

func (l flakyLink) Helper(ctx context.Context) (Helper, error) { return l.m, nil }
func (l flakyLink) Console(ctx context.Context, vm string, in io.Reader, out io.Writer) error {
	return nil
}
func (l flakyLink) Upload(ctx context.Context, kind string, f *helperapi.File, progress func(helperapi.Progress)) error {
	return nil
}
func (l flakyLink) Via() Route   { return Route{} }
func (l flakyLink) Close() error { return nil }

type flakyConnector map[string]*flakyMachine

func (c flakyConnector) Connect(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error) {
	return flakyLink{c[m.Address]}, nil
}

func TestWatchReportsMachinesVMsEventsAndOutages(t *testing.T) {
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	fc.machines["192.0.2.1"].vms["web"] = helperapi.VMInfo{Name: "web", State: "running", Network: "blue", Address: "10.0.0.2/24"}
	flaky := flakyConnector{}
	for addr, m := range fc.machines {
		flaky[addr] = &flakyMachine{fakeMachine: m, events: make(chan helperapi.VMEvent, 1)}
	}
	c = New(c.path, flaky, nil)

	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan Event, 100)
	done := make(chan error)
	go func() { done <- c.Watch(ctx, 100*time.Millisecond, func(ev Event) { events <- ev }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	wait := func(what string, ok func(Event) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-events:
				if ok(ev) {
					return
				}
			case <-deadline:
				t.Fatalf("no event: %s", what)
			}
		}
	}
	wait("inventory", func(ev Event) bool { return ev.Inventory != nil && len(ev.Inventory.Machines) == 2 })
	wait("m1 online", func(ev Event) bool {
		return ev.Machine != nil && ev.Machine.Name == "m1" && ev.Machine.Status == StatusOnline
	})
	wait("m1's VMs", func(ev Event) bool {
		return ev.VMsOf == "m1" && len(ev.VMs) == 1 && ev.VMs[0].IP == "10.0.0.2" && ev.VMs[0].Machine == "m1"
	})
	flaky["192.0.2.1"].events <- helperapi.VMEvent{VM: "web", Event: "stopped", State: "shut off"}
	wait("the pushed event", func(ev Event) bool {
		return ev.VM != nil && *ev.VM == VMChange{Machine: "m1", Name: "web", Event: "stopped", State: "shut off"}
	})
	flaky["192.0.2.2"].down.Store(true)
	wait("m2 offline", func(ev Event) bool {
		return ev.Machine != nil && ev.Machine.Name == "m2" && ev.Machine.Status == StatusOffline
	})
	wait("m1 still online", func(ev Event) bool {
		return ev.Machine != nil && ev.Machine.Name == "m1" && ev.Machine.Status == StatusOnline
	})
	flaky["192.0.2.2"].down.Store(false)
	wait("m2 back", func(ev Event) bool {
		return ev.Machine != nil && ev.Machine.Name == "m2" && ev.Machine.Status == StatusOnline
	})

	// A machine removed from the inventory is no longer watched.
	if err := inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
		inv.Machines = inv.Machines[:1]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wait("the new inventory", func(ev Event) bool { return ev.Inventory != nil && len(ev.Inventory.Machines) == 1 })
	time.Sleep(300 * time.Millisecond)
	for len(events) > 0 {
		if ev := <-events; ev.Machine != nil && ev.Machine.Name == "m2" {
			// one report may have been on its way; drain and look again below
			_ = ev
		}
	}
	time.Sleep(300 * time.Millisecond)
	for len(events) > 0 {
		if ev := <-events; ev.Machine != nil && ev.Machine.Name == "m2" {
			t.Errorf("m2 is still watched after its removal: %+v", ev.Machine)
		}
	}
}
