package tui

import (
	"fmt"
	"slices"
	"sort"
	"strings"
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
}

type vmRecord struct {
	cloud.VMStatus
	// cpu is the CPU use in percent of the VM's vCPUs between the last
	// two lists, -1 before there are two.
	cpu       float64
	sampledAt time.Time
}

func newStore() *store {
	return &store{machines: map[string]cloud.MachineStatus{}, vms: map[string]*vmRecord{}}
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

func (s *store) machineRows() []row {
	if s.inv == nil {
		return nil
	}
	type alloc struct{ vms, cpus, mem int }
	per := map[string]*alloc{}
	for _, v := range s.vms {
		a := per[v.Machine]
		if a == nil {
			a = &alloc{}
			per[v.Machine] = a
		}
		a.vms++
		a.cpus += v.CPUs
		a.mem += v.MemoryMiB
	}
	rows := make([]row, 0, len(s.inv.Machines))
	for _, m := range s.inv.Machines {
		st, word := s.status(m.Name)
		a := per[m.Name]
		if a == nil {
			a = &alloc{}
		}
		version := st.HelperVersion
		if version == "" {
			version = "—"
		}
		hs := cell{text: "—"}
		if word != "connecting" && word != cloud.StatusOffline {
			hs = handshakeCell(st)
		}
		detail := fmt.Sprintf("%s at %s", m.Name, m.Address)
		if m.NAT {
			detail += " (behind NAT)"
		}
		if st.Problem != "" {
			detail += ": " + st.Problem
		}
		rows = append(rows, row{id: m.Name, detail: detail, cells: []cell{
			{text: m.Name},
			{text: word, style: word},
			{text: version},
			{text: m.MeshIP.String()},
			hs,
			{text: cpuUse(st)},
			{text: memUse(st)},
			{text: fmt.Sprint(a.vms)},
		}})
	}
	sortRows(rows)
	return rows
}

// cpuUse is the machine's one-minute load over its CPUs, as a percentage.
func cpuUse(st cloud.MachineStatus) string {
	l := st.Facts.Load
	if l.CPUs == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*l.Load1/float64(l.CPUs))
}

// memUse is the share of the machine's memory in use.
func memUse(st cloud.MachineStatus) string {
	l := st.Facts.Load
	if l.MemTotalMiB == 0 {
		return "—"
	}
	return fmt.Sprintf("%d%%", 100*(l.MemTotalMiB-l.MemAvailableMiB)/l.MemTotalMiB)
}

// oldestHandshake is the age of the oldest of a machine's WireGuard
// handshakes, the one that matters, in the whole seconds its cell shows;
// negative when a peer never shook hands, and peers is false without any.
func oldestHandshake(st cloud.MachineStatus) (d time.Duration, peers bool) {
	if len(st.Facts.Peers) == 0 {
		return 0, false
	}
	worst := 0.0
	for _, p := range st.Facts.Peers {
		if p.HandshakeAge < 0 {
			return -1, true
		}
		worst = max(worst, p.HandshakeAge)
	}
	return time.Duration(worst) * time.Second, true
}

// handshakeCell shows the oldest handshake, coloured by its age as a
// number (never by parsing the text back).
func handshakeCell(st cloud.MachineStatus) cell {
	d, peers := oldestHandshake(st)
	switch {
	case !peers:
		return cell{text: "no peers"}
	case d < 0:
		return cell{text: "never", style: "down"}
	case d > cloud.StaleHandshake:
		return cell{text: age(d), style: "stale"}
	}
	return cell{text: age(d), style: "ok"}
}

// age says how long ago d was: seconds under a minute, minutes and
// seconds under an hour, then hours and minutes.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
}

func mib(n int) string {
	switch {
	case n == 0:
		return "0"
	case n%1024 == 0:
		return fmt.Sprintf("%dG", n/1024)
	case n >= 1024:
		return fmt.Sprintf("%.1fG", float64(n)/1024)
	}
	return fmt.Sprintf("%dM", n)
}

// linkHealth counts a network's links (pairs of member machines) whose
// WireGuard handshake is recent, and names the first bad ones.
func (s *store) linkHealth(members []string) (ok, total int, bad []string) {
	ages := map[string]map[string]float64{}
	for _, n := range members {
		st, found := s.machines[n]
		if !found || st.Status == cloud.StatusOffline {
			continue
		}
		a := make(map[string]float64, len(st.Facts.Peers))
		for _, p := range st.Facts.Peers {
			a[p.Name] = p.HandshakeAge
		}
		ages[n] = a
	}
	fresh := func(from, to string) bool {
		a, found := ages[from]
		if !found {
			return false
		}
		h, found := a[to]
		return found && h >= 0 && time.Duration(h*float64(time.Second)) <= cloud.StaleHandshake
	}
	for i, a := range members {
		for _, b := range members[i+1:] {
			total++
			if fresh(a, b) || fresh(b, a) {
				ok++
			} else if len(bad) < 3 {
				bad = append(bad, a+"–"+b)
			}
		}
	}
	return ok, total, bad
}

func (s *store) networkRows() []row {
	if s.inv == nil {
		return nil
	}
	var statuses []cloud.MachineStatus
	for _, st := range s.machines {
		statuses = append(statuses, st)
	}
	sort.Slice(statuses, func(i, j int) bool { return statuses[i].Name < statuses[j].Name })
	nets := cloud.Networks(s.inv, statuses)
	rows := make([]row, 0, len(nets))
	for _, n := range nets {
		ok, total, bad := s.linkHealth(n.Machines)
		links, style := "—", ""
		switch {
		case total == 0:
			links = "single"
		case ok == total:
			links, style = fmt.Sprintf("%d/%d ok", ok, total), "ok"
		case ok == 0:
			links, style = fmt.Sprintf("%d/%d ok", ok, total), "down"
		default:
			links, style = fmt.Sprintf("%d/%d ok", ok, total), "stale"
		}
		mtu := "—"
		if n.MTU > 0 {
			mtu = fmt.Sprint(n.MTU)
		}
		detail := fmt.Sprintf("%s (id %d) on %s", n.Name, n.ID, strings.Join(n.Machines, ", "))
		if len(bad) > 0 {
			detail = fmt.Sprintf("%s: no recent handshake on %s", n.Name, strings.Join(bad, ", "))
		}
		rows = append(rows, row{id: n.Name, detail: detail, cells: []cell{
			{text: n.Name},
			{text: n.Subnet},
			{text: members(n.Machines)},
			{text: mtu},
			{text: n.Tunnel},
			{text: links, style: style},
		}})
	}
	sortRows(rows)
	return rows
}

func members(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ",")
	}
	return fmt.Sprintf("%s,%s +%d", names[0], names[1], len(names)-2)
}

func (s *store) vmRows() []row {
	rows := make([]row, 0, len(s.vms)+8)
	seen := make(map[string]bool, len(s.vms))
	add := func(v cloud.VMStatus, cpu float64) {
		state := v.State
		if state == "" {
			state = "unknown"
		}
		c := "—"
		if cpu >= 0 {
			c = fmt.Sprintf("%.0f%%", cpu)
		}
		mem := "—"
		if v.MemoryMiB > 0 {
			mem = mib(v.MemoryMiB)
		}
		ip := v.IP
		if ip == "" {
			ip = "—"
		}
		netw := v.Network
		if netw == "" {
			netw = "—"
		}
		detail := v.Name + " on " + v.Machine
		if v.Image != "" {
			detail += ", image " + v.Image
		}
		if v.CPUs > 0 {
			detail += fmt.Sprintf(", %d vCPU", v.CPUs)
		}
		rows = append(rows, row{id: v.Name, detail: detail, cells: []cell{
			{text: v.Name},
			{text: state, style: state},
			{text: v.Machine},
			{text: netw},
			{text: ip},
			{text: c},
			{text: mem},
		}})
	}
	for _, r := range s.vms {
		seen[r.Name] = true
		add(r.VMStatus, r.cpu)
	}
	if s.inv != nil {
		// VMs the inventory places on a machine that has not told us
		// about them (yet, or because it does not answer).
		for _, v := range s.inv.VMs {
			if !seen[v.Name] {
				state := "unknown"
				if _, word := s.status(v.Machine); word == "connecting" {
					state = "connecting"
				}
				add(cloud.VMStatus{Name: v.Name, Machine: v.Machine, Network: v.Network, IP: v.Address.String(), State: state}, -1)
			}
		}
	}
	sortRows(rows)
	return rows
}

func sortRows(rows []row) {
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.id, b.id) })
}

// counts for the header.
func (s *store) summary() (machines, online, degraded, offline, vms, running int) {
	if s.inv == nil {
		return
	}
	machines = len(s.inv.Machines)
	for _, m := range s.inv.Machines {
		switch _, w := s.status(m.Name); w {
		case cloud.StatusOnline:
			online++
		case cloud.StatusDegraded:
			degraded++
		case cloud.StatusOffline:
			offline++
		}
	}
	for _, v := range s.vms {
		vms++
		if v.State == "running" {
			running++
		}
	}
	return
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
