package inventory

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"time"
)

// ReservationTTL is how long a reservation can hold: one older than this
// is taken for the leftover of a butter that could not release it, and
// dropped. It is long enough for a large image to be uploaded over a slow
// link.
const ReservationTTL = 12 * time.Hour

// Reservation holds a VM's name and address while the VM is being
// created, without touching the inventory file: it is recorded in
// "<inventory>.reservations" beside it (JSON, 0600, written atomically
// under the inventory's lock). Later Reserve calls see it: they refuse
// its name and address, and the inventory their fn gets lists its VM, so
// NextVMAddress passes over it; two butters never hand out the same name
// or address. Commit records the VM in the inventory once it is made;
// Release drops the reservation and leaves the inventory as it was.
// Load and Update do not see reservations.
//
// A reservation whose process is gone (on this host), that is older than
// ReservationTTL, or whose VM the inventory records, is ignored and
// dropped by the next butter that looks. A Reservation is for one
// goroutine.
type Reservation struct {
	// VM is what is held: its name and address, machine and network.
	VM VM

	path string // the inventory's real path
	id   string
	done bool
}

// held is a reservation as the file beside the inventory records it.
type held struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Machine string     `json:"machine"`
	Network string     `json:"network"`
	Address netip.Addr `json:"address"`
	// PID and Host are the butter process holding it, Since when it took
	// it.
	PID   int       `json:"pid"`
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

func (h held) vm() VM {
	return VM{Name: h.Name, Machine: h.Machine, Network: h.Network, Address: h.Address}
}

func (h held) who() string {
	return fmt.Sprintf("butter process %d on %s, since %s", h.PID, h.Host, h.Since.Local().Format(time.DateTime))
}

// reservationFile is the file's content.
type reservationFile struct {
	Version      int    `json:"version"`
	Reservations []held `json:"reservations"`
}

// reservationsVersion is the only format of the file this package reads.
const reservationsVersion = 1

// Reserve holds a new VM's name and address until the returned
// Reservation is committed or released; the inventory file is not
// written. Under the inventory's lock it loads the inventory and calls fn
// to choose the VM. fn sees the VMs of the other live reservations
// among inv.VMs, so inv.NextVMAddress passes over their addresses; what
// it changes in inv is thrown away.
//
// Reserve refuses a VM whose name or address the inventory records or a
// reservation holds, and one the inventory would not take (Validate's
// problems, such as an address outside its network's subnet). Nothing is
// written when it refuses or fn fails (fn's error is returned as is).
func Reserve(ctx context.Context, path string, fn func(inv *Inventory) (VM, error)) (*Reservation, error) {
	path, unlock, err := lockFile(ctx, path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	inv, _, err := load(path)
	if err != nil {
		return nil, refuse(path, err)
	}
	hs, err := readReservations(path)
	if err != nil {
		return nil, err
	}
	hs = live(hs, inv, time.Now())
	view := copyInventory(inv)
	for _, h := range hs {
		view.VMs = append(view.VMs, h.vm())
	}
	v, err := fn(view)
	if err != nil {
		return nil, err
	}
	if err := fits(inv, hs, v); err != nil {
		return nil, err
	}
	h := held{ID: rand.Text(), Name: v.Name, Machine: v.Machine, Network: v.Network, Address: v.Address,
		PID: os.Getpid(), Host: hostname(), Since: time.Now().UTC()}
	if err := writeReservations(path, append(hs, h)); err != nil {
		return nil, err
	}
	return &Reservation{VM: v, path: path, id: h.ID}, nil
}

// Commit records the reserved VM in the inventory (as Update does, .bak
// and all) and drops the reservation. It records nothing and keeps the
// reservation when the VM no longer fits: its network or machine went,
// or its name or address was taken meanwhile (possible only once the
// reservation outlived ReservationTTL). After Commit, Release does
// nothing.
func (r *Reservation) Commit(ctx context.Context) error {
	if r.done {
		return fmt.Errorf("vm %q: its reservation is over already", r.VM.Name)
	}
	return r.withOthers(ctx, func(path string, others []held) error {
		err := updateLocked(path, func(inv *Inventory) error {
			others = live(others, inv, time.Now())
			if err := fits(inv, others, r.VM); err != nil {
				return err
			}
			inv.VMs = append(inv.VMs, r.VM)
			return nil
		})
		if err != nil {
			return err
		}
		r.done = true
		// The VM is recorded. Should dropping the reservation fail, the
		// next butter to look drops it: a reservation whose VM the
		// inventory records is over.
		_ = writeReservations(path, others)
		return nil
	})
}

// Release drops the reservation, leaving the inventory as it is. It does
// nothing after Commit or a first Release. It waits for the inventory's
// lock until ctx ends: give it a context that outlives a cancelled
// operation (context.WithoutCancel).
func (r *Reservation) Release(ctx context.Context) error {
	if r.done {
		return nil
	}
	return r.withOthers(ctx, func(path string, others []held) error {
		inv, _, _ := load(path) // nil when it does not load: others' stay
		if err := writeReservations(path, live(others, inv, time.Now())); err != nil {
			return err
		}
		r.done = true
		return nil
	})
}

// withOthers calls f under the inventory's lock with the reservations
// other than r.
func (r *Reservation) withOthers(ctx context.Context, f func(path string, others []held) error) error {
	path, unlock, err := lockFile(ctx, r.path)
	if err != nil {
		return err
	}
	defer unlock()
	hs, err := readReservations(path)
	if err != nil {
		return err
	}
	return f(path, slices.DeleteFunc(hs, func(h held) bool { return h.ID == r.id }))
}

// fits refuses v when inv records, or hs holds, its name or address, or
// when inv would not take it.
func fits(inv *Inventory, hs []held, v VM) error {
	if _, ok := inv.VM(v.Name); ok {
		return fmt.Errorf("vm %q exists; pick another name or remove it first", v.Name)
	}
	for _, h := range hs {
		if h.Name == v.Name {
			return fmt.Errorf("vm %q is being created by %s; pick another name, or wait for it", v.Name, h.who())
		}
	}
	for _, o := range inv.VMs {
		if o.Address == v.Address {
			return fmt.Errorf("address %s is vm %q's; pick another, or leave it out for the next free one", v.Address, o.Name)
		}
	}
	for _, h := range hs {
		if h.Address == v.Address {
			return fmt.Errorf("address %s is held for vm %q, which %s is creating; pick another, or leave it out for the next free one",
				v.Address, h.Name, h.who())
		}
	}
	probe := copyInventory(inv)
	probe.VMs = append(probe.VMs, v)
	if probs := probe.validate(); len(probs) > 0 {
		return toError("", probs, nil)
	}
	return nil
}

// live is hs without the reservations that are over: their process is
// gone, they are older than ReservationTTL, or inv (if not nil) records
// their VM.
func live(hs []held, inv *Inventory, now time.Time) []held {
	self := hostname()
	return slices.DeleteFunc(hs, func(h held) bool {
		if now.Sub(h.Since) > ReservationTTL {
			return true
		}
		if h.Host == self && !processAlive(h.PID) {
			return true
		}
		if inv == nil {
			return false
		}
		v, ok := inv.VM(h.Name)
		return ok && *v == h.vm()
	})
}

// reservationsPath is the file beside the inventory at path that holds
// its reservations.
func reservationsPath(path string) string { return path + ".reservations" }

// readReservations reads the reservations of the inventory at path; a
// missing file holds none.
func readReservations(path string) ([]held, error) {
	name := reservationsPath(path)
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the VM reservations: %w", err)
	}
	var f reservationFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read the VM reservations %s: %w; if no butter is creating a VM, remove the file", name, err)
	}
	if f.Version != reservationsVersion {
		return nil, fmt.Errorf("read the VM reservations %s: format %d, this butter reads %d; if no butter is creating a VM, remove the file",
			name, f.Version, reservationsVersion)
	}
	return f.Reservations, nil
}

// writeReservations replaces the reservations of the inventory at path;
// with none left, the file goes.
func writeReservations(path string, hs []held) error {
	name := reservationsPath(path)
	if len(hs) == 0 {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("drop the VM reservations: %w", err)
		}
		return nil
	}
	b, err := json.MarshalIndent(reservationFile{Version: reservationsVersion, Reservations: hs}, "", "  ")
	if err != nil {
		return fmt.Errorf("write the VM reservations: %w", err)
	}
	return writeAtomic(name, append(b, '\n'), 0o600)
}

// copyInventory is a deep copy of inv.
func copyInventory(inv *Inventory) *Inventory {
	c := *inv
	c.Machines = slices.Clone(inv.Machines)
	c.Networks = slices.Clone(inv.Networks)
	for i := range c.Networks {
		c.Networks[i].Machines = slices.Clone(c.Networks[i].Machines)
	}
	c.VMs = slices.Clone(inv.VMs)
	return &c
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}
