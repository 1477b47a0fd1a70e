package tui

import (
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/inventory"
)

// store is what the dashboard knows: the inventory, and what the helpers
// last said. Only Update touches it.
type store struct {
	inv      *inventory.Inventory
	invErr   error
	machines map[string]cloud.MachineStatus
	vms      map[string]*vmRecord
	// catchUp is the dashboard's own syncs of pending machines.
	catchUp catchUps
	// topology is the mesh planned from topologyOf, for links.
	topology   *cloud.Topology
	topologyOf *inventory.Inventory
}

type vmRecord struct {
	cloud.VMStatus
	// cpu is the CPU use in percent of the VM's vCPUs between the last
	// two lists, -1 before there are two.
	cpu       float64
	sampledAt time.Time
}

func newStore() *store {
	return &store{machines: map[string]cloud.MachineStatus{}, vms: map[string]*vmRecord{}, catchUp: catchUps{}}
}

// apply takes one event and says which panes changed.
func (s *store) apply(ev cloud.Event) (changed paneSet) {
	switch {
	case ev.Inventory != nil:
		s.inv, s.invErr = ev.Inventory, nil
		for name := range s.machines {
			if _, ok := s.inv.Machine(name); !ok {
				delete(s.machines, name)
			}
		}
		return allPanes
	case ev.InventoryErr != nil:
		s.invErr = ev.InventoryErr
		return allPanes
	case ev.Machine != nil:
		s.machines[ev.Machine.Name] = *ev.Machine
		return paneSet{paneMachines: true, paneNetworks: true}
	case ev.VMsOf != "":
		listed := map[string]bool{}
		for _, v := range ev.VMs {
			listed[v.Name] = true
			r := s.vms[v.Name]
			if r == nil {
				r = &vmRecord{cpu: -1}
				s.vms[v.Name] = r
			}
			if !r.sampledAt.IsZero() && r.Machine == v.Machine && v.CPUs > 0 {
				dt := ev.At.Sub(r.sampledAt).Seconds()
				if dt > 0 && v.CPUTime >= r.CPUTime {
					r.cpu = (v.CPUTime - r.CPUTime) / dt / float64(v.CPUs) * 100
				}
			}
			if v.State != "running" {
				r.cpu = -1
			}
			r.VMStatus, r.sampledAt = v, ev.At
		}
		for name, r := range s.vms {
			if r.Machine == ev.VMsOf && !listed[name] {
				delete(s.vms, name)
			}
		}
		return paneSet{paneMachines: true, paneVMs: true}
	case ev.VM != nil:
		c := ev.VM
		r := s.vms[c.Name]
		if c.Event == "undefined" {
			if r != nil && r.Machine == c.Machine {
				delete(s.vms, c.Name)
			}
			return paneSet{paneMachines: true, paneVMs: true}
		}
		if r == nil {
			r = &vmRecord{cpu: -1, VMStatus: cloud.VMStatus{Name: c.Name, Machine: c.Machine}}
			s.vms[c.Name] = r
		}
		r.State = c.State
		if c.State != "running" {
			r.cpu = -1
		}
		return paneSet{paneMachines: true, paneVMs: true}
	}
	return paneSet{}
}

// status of a machine as a word, "connecting" before its first report.
func (s *store) status(name string) (cloud.MachineStatus, string) {
	st, ok := s.machines[name]
	if !ok {
		return st, "connecting"
	}
	return st, st.Status
}

// vmsOf names the VMs the inventory places on machine.
func (s *store) vmsOf(machine string) []string {
	var out []string
	if s.inv == nil {
		return nil
	}
	for _, v := range s.inv.VMs {
		if v.Machine == machine {
			out = append(out, v.Name)
		}
	}
	return out
}

// linkHealth counts a network's links (pairs of member machines) that
// are ok, as `network show` judges them (cloud.Topology.Links: handshakes,
// relays, echoes), and names the first bad ones.
func (s *store) linkHealth(members []string) (ok, total int, bad []string) {
	for _, l := range s.links(members) {
		total++
		if l.State == cloud.LinkOK {
			ok++
		} else if len(bad) < 3 {
			bad = append(bad, l.A+"–"+l.B)
		}
	}
	return ok, total, bad
}

// links are the links between members, from the specs of the inventory
// (computed once per inventory) and what the helpers last said.
func (s *store) links(members []string) []cloud.LinkStatus {
	if s.inv == nil {
		return nil
	}
	if s.topologyOf != s.inv {
		specs, _ := cloud.Specs(s.inv)
		s.topology, s.topologyOf = cloud.NewTopology(specs), s.inv
	}
	// Every machine's, not only the members': a relay may be none.
	statuses := make([]cloud.MachineStatus, 0, len(s.machines))
	for _, st := range s.machines {
		statuses = append(statuses, st)
	}
	return s.topology.Links(statuses, members)
}

// counts are the header's figures.
type counts struct {
	machines, online, degraded, offline, pending int
	vms, running                                 int
}

func (s *store) summary() counts {
	var c counts
	if s.inv == nil {
		return c
	}
	c.machines = len(s.inv.Machines)
	for _, m := range s.inv.Machines {
		if s.inv.Pending(m) {
			c.pending++
		}
		switch _, w := s.status(m.Name); w {
		case cloud.StatusOnline:
			c.online++
		case cloud.StatusDegraded:
			c.degraded++
		case cloud.StatusOffline:
			c.offline++
		}
	}
	for _, v := range s.vms {
		c.vms++
		if v.State == "running" {
			c.running++
		}
	}
	return c
}

// complete says every machine in the inventory has reported, and every
// VM the inventory records has been heard of: the first full dashboard.
func (s *store) complete() bool {
	if s.inv == nil {
		return false
	}
	for _, m := range s.inv.Machines {
		if _, ok := s.machines[m.Name]; !ok {
			return false
		}
	}
	for _, v := range s.inv.VMs {
		if st := s.machines[v.Machine]; st.Status != cloud.StatusOffline && s.vms[v.Name] == nil {
			return false
		}
	}
	return true
}
