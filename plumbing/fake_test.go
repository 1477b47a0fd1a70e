package plumbing

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// fakeTable is an in-memory link table that behaves like the kernel where
// it matters to the helper: deleting a bridge frees its ports, deleting a
// device deletes the VXLAN links that ride on it, and adding a link that
// exists fails. It logs every call as text.
type fakeTable struct {
	links map[string]Link
	log   []string
}

func newFakeTable(links ...Link) *fakeTable {
	f := &fakeTable{links: map[string]Link{}}
	for _, l := range links {
		f.links[l.Name] = l
	}
	return f
}

func (f *fakeTable) Links(ctx context.Context) ([]Link, error) {
	var ls []Link
	for _, name := range slices.Sorted(maps.Keys(f.links)) {
		ls = append(ls, f.links[name])
	}
	return ls, nil
}

func (f *fakeTable) Add(ctx context.Context, l Link) error {
	if _, ok := f.links[l.Name]; ok {
		return fmt.Errorf("link %s exists", l.Name)
	}
	f.log = append(f.log, "add "+l.Name)
	// A new link has its identity and the kernel's defaults.
	f.links[l.Name] = Link{Name: l.Name, Kind: l.Kind, MTU: 1500, Key: l.Key, Local: l.Local,
		Remote: l.Remote, Dev: l.Dev, Port: l.Port, Learning: l.Learning}
	return nil
}

func (f *fakeTable) Set(ctx context.Context, have, want Link) error {
	l, ok := f.links[want.Name]
	if !ok {
		return fmt.Errorf("link %s not found", want.Name)
	}
	if want.Master != "" {
		if _, ok := f.links[want.Master]; !ok {
			return fmt.Errorf("master %s not found", want.Master)
		}
	}
	if want.Isolated && want.Master == "" {
		return fmt.Errorf("isolated needs a bridge port")
	}
	f.log = append(f.log, "set "+want.Name+" "+settable(l, want))
	l.MTU, l.Master, l.Isolated, l.Alias, l.Up = want.MTU, want.Master, want.Isolated, want.Alias, want.Up
	if l.Kind == KindBridge && l.MAC == "" {
		l.MAC = "76:1d:00:00:00:01" // the kernel picks one
	}
	l.FDB, l.Addrs, l.Routes = slices.Clone(want.FDB), slices.Clone(want.Addrs), slices.Clone(want.Routes)
	if want.MAC != "" {
		l.MAC = want.MAC
	}
	f.links[want.Name] = l
	return nil
}

func (f *fakeTable) Delete(ctx context.Context, l Link) error {
	if _, ok := f.links[l.Name]; !ok {
		return nil
	}
	f.log = append(f.log, "del "+l.Name)
	delete(f.links, l.Name)
	for name, o := range f.links {
		switch {
		case o.Master == l.Name:
			o.Master, o.Isolated = "", false
			f.links[name] = o
		case o.Kind == KindVXLAN && o.Dev == l.Name:
			delete(f.links, name)
		}
	}
	return nil
}

// dump prints the table, one link a line, for comparing states.
func (f *fakeTable) dump() string {
	var b strings.Builder
	ls, _ := f.Links(context.Background())
	for _, l := range ls {
		// A MAC the plan does not set (no gateway's) is whatever the
		// kernel or a previous plan left: not the helper's state.
		if !strings.HasPrefix(l.MAC, "02:62:74:") {
			l.MAC = ""
		}
		fmt.Fprintf(&b, "%s up=%v alias=%q fdb=%s addrs=%s routes=%s\n", l, l.Up, l.Alias,
			joinAddrs(l.FDB), joinPrefixes(l.Addrs), joinPrefixes(l.Routes))
	}
	return b.String()
}
