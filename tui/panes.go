package tui

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/butter-cloud/butter/cloud"
)

// pane identifies one of the dashboard's three lists.
type pane int

const (
	paneMachines pane = iota
	paneNetworks
	paneVMs
	paneCount
)

func (p pane) String() string {
	return [...]string{"Machines", "Networks", "VMs"}[p]
}

// paneSet says which panes need their rows rebuilt.
type paneSet [paneCount]bool

var allPanes = paneSet{true, true, true}

// paneDef is what makes a pane: its columns, and its rows out of what the
// dashboard knows.
type paneDef struct {
	cols []column
	rows func(*store) []row
}

var paneDefs = [paneCount]paneDef{
	paneMachines: {
		cols: []column{
			{title: "NAME", max: 24}, {title: "STATUS", max: 18}, {title: "HELPER", max: 12},
			{title: "MESH IP", max: 15}, {title: "HANDSHAKE", max: 12}, {title: "CPU", max: 5, right: true},
			{title: "MEM", max: 5, right: true}, {title: "VMS", max: 4, right: true}},
		rows: (*store).machineRows,
	},
	paneNetworks: {
		cols: []column{
			{title: "NAME", max: 20}, {title: "SUBNET", max: 18}, {title: "GATEWAY", max: 15}, {title: "EGRESS", max: 6},
			{title: "MACHINES", max: 28},
			{title: "MTU", max: 5, right: true}, {title: "TUNNEL", max: 7}, {title: "LINKS", max: 14}},
		rows: (*store).networkRows,
	},
	paneVMs: {
		cols: []column{
			{title: "NAME", max: 24}, {title: "STATE", max: 10}, {title: "MACHINE", max: 16},
			{title: "NETWORK", max: 14}, {title: "ADDRESS", max: 15}, {title: "CPU", max: 5, right: true},
			{title: "MEM", max: 6, right: true}},
		rows: (*store).vmRows,
	},
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
		pending, syncing := s.inv.Pending(m), s.catchUp.running(m.Name)
		detail := fmt.Sprintf("%s at %s", m.Name, m.Address)
		if m.NAT {
			detail += " (behind NAT)"
		}
		if pending {
			// Before the problem, which can be long: the line is cut.
			detail += fmt.Sprintf(" · pending: confirmed generation %d, the cloud is at %d", m.Confirmed, s.inv.Generation)
			switch {
			case syncing:
				detail += "; catching up"
			case answering(word):
				detail += "; S syncs now"
			default:
				detail += "; catches up when it answers"
			}
		}
		switch {
		case st.Problem != "" && word == cloud.StatusOffline:
			detail += " · does not answer: " + st.Problem
		case st.Problem != "":
			detail += " · " + st.Problem
		}
		rows = append(rows, row{id: m.Name, detail: detail, cells: []cell{
			{text: m.Name},
			statusCell(word, pending, syncing),
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

// answering tells whether a machine's status word means it answers.
func answering(word string) bool {
	return word == cloud.StatusOnline || word == cloud.StatusDegraded
}

// statusCell is a machine's status word, and whether it is pending (it
// missed a change) or catching up. Pending colours an answering machine
// apart; an offline one stays red.
func statusCell(word string, pending, syncing bool) cell {
	switch {
	case syncing:
		return cell{text: word + " · syncing", style: "syncing"}
	case pending && answering(word):
		return cell{text: word + " · pending", style: "pending"}
	case pending:
		return cell{text: word + " · pending", style: word}
	}
	return cell{text: word, style: word}
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
			{text: cmp.Or(n.Gateway, "—")},
			{text: onOff(n.Egress)},
			{text: members(n.Machines)},
			{text: mtu},
			{text: n.Tunnel},
			{text: links, style: style},
		}})
	}
	sortRows(rows)
	return rows
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
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
