package cloud

import (
	"slices"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// Desired is the copy of the cloud's desired state every helper keeps
// beside its spec: the inventory without what is the operator's own (the
// identity files) and without the machines' confirmations.
func Desired(inv *inventory.Inventory) *helperapi.Desired {
	d := &helperapi.Desired{Generation: int64(inv.Generation),
		Mesh: helperapi.DesiredMesh{Prefix: inv.Mesh.Prefix, Port: inv.Mesh.Port}}
	for _, m := range inv.Machines {
		d.Machines = append(d.Machines, helperapi.DesiredMachine{Name: m.Name, Address: m.Address, Port: m.Port,
			User: m.User, Endpoint: m.Endpoint, NAT: m.NAT, MeshIP: m.MeshIP, PublicKey: m.PublicKey, Accel: m.Accel})
	}
	// A network and a VM are the same fields on both sides: converted, so
	// that a field added to one and not the other fails to build.
	for _, n := range inv.Networks {
		dn := helperapi.DesiredNetwork(n)
		dn.Machines = slices.Clone(n.Machines)
		d.Networks = append(d.Networks, dn)
	}
	for _, v := range inv.VMs {
		d.VMs = append(d.VMs, helperapi.DesiredVM(v))
	}
	return d
}

// FromDesired is the inventory a desired-state copy describes. Identity
// files are the operator's and not in the copy: identity (if set) is
// given to every machine. No machine has confirmed anything yet.
func FromDesired(d helperapi.Desired, identity string) *inventory.Inventory {
	inv := inventory.New()
	inv.Generation = int(d.Generation)
	if d.Mesh.Prefix.IsValid() {
		inv.Mesh.Prefix = d.Mesh.Prefix
	}
	if d.Mesh.Port != 0 {
		inv.Mesh.Port = d.Mesh.Port
	}
	for _, m := range d.Machines {
		inv.Machines = append(inv.Machines, inventory.Machine{Name: m.Name, Address: m.Address, Port: m.Port,
			User: m.User, Identity: identity, Endpoint: m.Endpoint, NAT: m.NAT, MeshIP: m.MeshIP, PublicKey: m.PublicKey,
			Accel: m.Accel})
	}
	for _, n := range d.Networks {
		in := inventory.Network(n)
		in.Machines = slices.Clone(n.Machines)
		inv.Networks = append(inv.Networks, in)
	}
	for _, v := range d.VMs {
		inv.VMs = append(inv.VMs, inventory.VM(v))
	}
	return inv
}

// specsAt is every machine's spec for inv, stamped with inv's generation
// and carrying the desired-state copy.
func specsAt(inv *inventory.Inventory) (map[string]helperapi.Spec, error) {
	specs, err := Specs(inv)
	if err != nil {
		return nil, err
	}
	d := Desired(inv)
	for name, s := range specs {
		s.Generation, s.Desired = d.Generation, d
		specs[name] = s
	}
	return specs, nil
}
