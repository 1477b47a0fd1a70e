// Package helperapi is the wire contract between the operator's butter and
// the helper on each machine: the machine spec and its parts, what the
// helper reports back (report, facts, drift), the VM and image requests
// and answers, the JSON-RPC method names, the serve hello and protocol
// version, and the client that calls a helper. Both sides import it; it
// imports neither netlink, nor go-libvirt, nor wireguard-go, so the
// operator links none of the machine side. It also holds the rules a value
// must pass before anything moves (one name rule, the VM defaults), so the
// CLI, the dashboard, the inventory and the helper refuse a bad value the
// same way.
package helperapi
