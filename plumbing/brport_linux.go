package plumbing

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// portsIsolated reads the isolated flag of every bridge port in the
// namespace, by link index, from one dump of the kernel's bridge ports.
// netlink's LinkGetProtinfo dumps every port for each port it is asked
// about: with 310 tunnel ports (31 peers, ten networks) a read of the
// links was 310 dumps of 310 ports, and the daemon's probes read the
// links every round (a quarter of a TCG core at rest).
func (k *kernelTable) portsIsolated() (map[int]bool, error) {
	var err error
	for range 5 {
		var msgs [][]byte
		req := &nl.NetlinkRequest{
			NlMsghdr: unix.NlMsghdr{Len: unix.SizeofNlMsghdr, Type: unix.RTM_GETLINK, Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP},
			Sockets:  map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: k.ports},
		}
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
		if err == nil {
			return parsePortsIsolated(msgs)
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list bridge ports: %w", err)
}

// parsePortsIsolated reads the isolated flag out of each RTM_NEWLINK
// message of an AF_BRIDGE dump: IFLA_PROTINFO's IFLA_BRPORT_ISOLATED.
func parsePortsIsolated(msgs [][]byte) (map[int]bool, error) {
	out := make(map[int]bool, len(msgs))
	for _, m := range msgs {
		if len(m) < unix.SizeofIfInfomsg {
			return nil, fmt.Errorf("list bridge ports: a message of %d bytes", len(m))
		}
		info := nl.DeserializeIfInfomsg(m)
		attrs, err := nl.ParseRouteAttr(m[info.Len():])
		if err != nil {
			return nil, fmt.Errorf("list bridge ports: link %d: %w", info.Index, err)
		}
		for _, a := range attrs {
			if a.Attr.Type != unix.IFLA_PROTINFO|unix.NLA_F_NESTED {
				continue
			}
			flags, err := nl.ParseRouteAttr(a.Value)
			if err != nil {
				return nil, fmt.Errorf("list bridge ports: link %d: %w", info.Index, err)
			}
			for _, f := range flags {
				if f.Attr.Type == nl.IFLA_BRPORT_ISOLATED && len(f.Value) > 0 {
					out[int(info.Index)] = f.Value[0] != 0
				}
			}
		}
	}
	return out, nil
}
