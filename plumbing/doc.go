// Package plumbing is the helper: the machine side of butter, run on each
// machine as `butter helper`. It turns the machine's spec (helperapi.Spec)
// into the chain of links that carries each private network between
// machines (bridge → gretap or VXLAN → WireGuard) and keeps it so: a plan
// of the links the spec wants, a diff against the links the kernel has,
// and a converge that adds before it deletes; beside the links, one
// nftables table of its own (inet butter) admits each network's tunnel
// packets from its members only. It makes and keeps the machine's
// WireGuard key, runs WireGuard in the kernel or in-process
// (wireguard-go), serves the operator's JSON-RPC calls as a daemon, and
// drives VMs (plumbing/vm) and their images (plumbing/images).
package plumbing
