// Package resolver is the DNS server a network's VMs use: the helper runs
// one per network on each member machine, listening on the network's
// gateway address, port 53, over UDP and TCP.
//
// It answers the network's VM names from the desired state the helper
// holds (every VM of the network, on any machine): `web` and
// `web.NETWORK.internal` as A records, their addresses as PTR records.
// Other names under `.internal` and other single-label names get NXDOMAIN;
// everything else is forwarded to the machine's own resolvers (its
// /etc/resolv.conf), with bounded time, size and concurrency.
//
// It runs inside the helper daemon, as userspace WireGuard does: no
// package to install on machines, no configuration file to render, and
// answers that follow the spec as soon as the helper applies it (Zones,
// Servers.Converge). The answer logic is plain code over a Zone (Answer),
// tested without a socket.
package resolver
