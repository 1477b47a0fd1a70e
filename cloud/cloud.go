// Package cloud is butter's core: the operations the CLI and the TUI both
// call — add and remove machines, create and remove networks and VMs, list
// everything with live status — over the inventory (the operator's record
// and the cloud's desired state) and the helpers on the machines (the
// truth about what runs).
//
// A change is a new generation of the inventory: validated, turned into a
// spec per machine (Specs) stamped with the generation and a copy of the
// whole desired state, prepared on every machine that answers (any refusal
// moves nothing), applied in parallel, and recorded with each machine's
// confirmation. A machine that is away does not block it: it is pending,
// and `Sync` catches it up when it returns. Each machine applies its spec
// whole or restores its previous one; there is no rollback across
// machines.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
)

// Helper is a machine's helper as the core drives it; *helperapi.Client is
// one.
type Helper interface {
	PublicKey(ctx context.Context) (string, error)
	RotateKey(ctx context.Context) (string, error)
	Prepare(ctx context.Context, spec helperapi.Spec) error
	Apply(ctx context.Context, spec helperapi.Spec) (helperapi.Report, error)
	Desired(ctx context.Context) (helperapi.Desired, error)
	Remove(ctx context.Context) error
	DryRun(ctx context.Context, req helperapi.DryRunRequest) (helperapi.DryRun, error)
	Facts(ctx context.Context) (helperapi.Facts, error)
	CreateVM(ctx context.Context, req helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error)
	ListVMs(ctx context.Context) ([]helperapi.VMInfo, error)
	VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error)
}

// Link is a live connection to a machine.
type Link interface {
	// Helper is the machine's helper (reconnecting as needed).
	Helper(ctx context.Context) (Helper, error)
	// Console attaches to a VM's serial console until ctx ends or the
	// console closes.
	Console(ctx context.Context, vmName string, in io.Reader, out io.Writer) error
	// Upload sends a file of the operator's into the machine's image
	// store, filling in f's Size and SHA256. kind is disk, kernel or
	// initrd.
	Upload(ctx context.Context, kind string, f *helperapi.File, progress func(helperapi.Progress)) error
	// Via tells how the operator reaches the machine: its resolved address
	// and whether through a jump host.
	Via() Route
	Close() error
}

// Route is how the operator's connection reaches a machine.
type Route struct {
	Addr    string // the address connected to, without port
	Jumped  bool   // through a ProxyJump host
	Version string // the helper's version
}

// Connector reaches machines: dialing, checking the host key, installing
// and starting the helper as needed.
type Connector interface {
	Connect(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error)
}

// Trust says what to do with a host key seen for the first time. A key
// that changed is always refused.
type Trust struct {
	AcceptNew bool   // trust whatever key the host shows
	Pinned    string // trust only this key (SHA256:…)
	// Ask asks the user; nil refuses unknown keys.
	Ask func(ctx context.Context, host, fingerprint string) (bool, error)
}

// Step is a line of a long operation's log, for the UI.
type Step struct {
	Machine string
	Text    string
	Done    bool
	Err     error
}

// Cloud is the operator's cloud: an inventory file and the machines in it.
type Cloud struct {
	path string
	conn Connector
	log  *slog.Logger

	mu    sync.Mutex
	links map[string]Link
	// away remembers, for awayMemory, a machine whose TCP connect just
	// failed, so one command does not wait out its connect timeout twice.
	away map[string]awayMark
	// connectSteps hears what connecting does beyond the connection (the
	// helper installed, its daemon started) for every verb; nil: nothing.
	connectSteps func(Step)
}

// SayConnects has steps told what connecting to a machine did beyond
// connecting (installed the helper, started its daemon), whatever the
// operation: a step is said when it happens.
func (c *Cloud) SayConnects(steps func(Step)) {
	c.mu.Lock()
	c.connectSteps = steps
	c.mu.Unlock()
}

type awayMark struct {
	err error
	at  time.Time
}

// awayMemory is how long a machine that did not answer counts as away
// without being dialled again.
const awayMemory = 10 * time.Second

// New returns the cloud kept in the inventory at path.
func New(path string, c Connector, log *slog.Logger) *Cloud {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cloud{path: path, conn: c, log: log, links: map[string]Link{}, away: map[string]awayMark{}}
}

// Close hangs up every machine.
func (c *Cloud) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for name, l := range c.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("machine %q: %w", name, err))
		}
		delete(c.links, name)
	}
	return errors.Join(errs...)
}

// Inventory loads the inventory as it is now.
func (c *Cloud) Inventory() (*inventory.Inventory, error) {
	return inventory.Load(c.path)
}

// Path is the inventory's file.
func (c *Cloud) Path() string { return c.path }

// link returns the machine's connection, making it on first use.
func (c *Cloud) link(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error) {
	c.mu.Lock()
	l, ok := c.links[m.Name]
	mark, wasAway := c.away[m.Name]
	c.mu.Unlock()
	if ok {
		return l, nil
	}
	if wasAway && time.Since(mark.at) < awayMemory {
		return nil, mark.err
	}
	l, err := c.conn.Connect(ctx, m, trust, steps)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		var ue *remote.UnreachableError
		if errors.As(err, &ue) {
			c.away[m.Name] = awayMark{err: err, at: time.Now()}
		}
		return nil, err
	}
	delete(c.away, m.Name)
	if old, ok := c.links[m.Name]; ok {
		l.Close()
		return old, nil
	}
	c.links[m.Name] = l
	return l, nil
}

func (c *Cloud) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.links[name]; ok {
		l.Close()
		delete(c.links, name)
	}
}

func (c *Cloud) helper(ctx context.Context, m inventory.Machine) (Helper, error) {
	c.mu.Lock()
	steps := c.connectSteps
	c.mu.Unlock()
	l, err := c.link(ctx, m, Trust{}, steps)
	if err != nil {
		return nil, err
	}
	return l.Helper(ctx)
}

// MachineErrors are per-machine failures of one operation.
type MachineErrors map[string]error

func (e MachineErrors) Error() string {
	names := make([]string, 0, len(e))
	for n := range e {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "machine %s: %v", n, e[n])
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see each machine's error.
func (e MachineErrors) Unwrap() []error {
	out := make([]error, 0, len(e))
	for _, err := range e {
		out = append(out, err)
	}
	return out
}

// each runs fn for every named machine in parallel and gathers failures.
func each(names []string, fn func(name string) error) error {
	var mu sync.Mutex
	errs := MachineErrors{}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			if err := fn(n); err != nil {
				mu.Lock()
				errs[n] = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// linkHelper is a machine's helper over its link, made if need be. Only a
// machine being added is connected with a trust decision (AddMachine makes
// its link first); every other one must have a known host key.
func (c *Cloud) linkHelper(ctx context.Context, m inventory.Machine, steps func(Step)) (Helper, error) {
	l, err := c.link(ctx, m, Trust{}, steps)
	if err != nil {
		return nil, err
	}
	return l.Helper(ctx)
}

func say(steps func(Step), machine, text string) {
	if steps != nil {
		steps(Step{Machine: machine, Text: text})
	}
}

// clone deep-copies an inventory.
func clone(inv *inventory.Inventory) *inventory.Inventory {
	n := *inv
	n.Machines = slices.Clone(inv.Machines)
	n.VMs = slices.Clone(inv.VMs)
	n.Networks = slices.Clone(inv.Networks)
	for i := range n.Networks {
		n.Networks[i].Machines = slices.Clone(n.Networks[i].Machines)
	}
	return &n
}

func machineNames(inv *inventory.Inventory) []string {
	var names []string
	for _, m := range inv.Machines {
		names = append(names, m.Name)
	}
	return names
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}
