package plumbing

import (
	"fmt"
	"strconv"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// The dry run shows each change as the shell command that makes it by
// hand: `ip`, `bridge`, `wg`, `nft`, `sysctl`. The commands are rendered
// from the very values the helper executes (linkOp, wgtypes.Config,
// fwTable), never from a description of them.

// changeCommands renders the kernel calls of c (see changeOps), have
// being the link as it is now.
func changeCommands(c Change, have Link) []string {
	var out []string
	for _, op := range changeOps(c, have) {
		out = append(out, opCommand(op))
	}
	return out
}

// opCommand is the command that makes op by hand.
func opCommand(op linkOp) string {
	l := op.Link
	dev := "dev " + shellWord(l.Name)
	switch op.Kind {
	case opAdd:
		return addCommand(l)
	case opDelete:
		return "ip link del " + dev
	case opMTU:
		return fmt.Sprintf("ip link set %s mtu %d", dev, l.MTU)
	case opMaster:
		return fmt.Sprintf("ip link set %s master %s", dev, shellWord(l.Master))
	case opNoMaster:
		return fmt.Sprintf("ip link set %s nomaster", dev)
	case opMAC:
		return fmt.Sprintf("ip link set %s address %s", dev, l.MAC)
	case opIsolated:
		return fmt.Sprintf("bridge link set %s isolated %s", dev, onOff(op.On))
	case opAlias:
		return fmt.Sprintf("ip link set %s alias %s", dev, shellWord(l.Alias))
	case opUp:
		if op.On {
			return fmt.Sprintf("ip link set %s up", dev)
		}
		return fmt.Sprintf("ip link set %s down", dev)
	case opFDBAdd:
		return fmt.Sprintf("bridge fdb append 00:00:00:00:00:00 %s dst %s self permanent", dev, op.Addr)
	case opFDBDelete:
		return fmt.Sprintf("bridge fdb del 00:00:00:00:00:00 %s dst %s self", dev, op.Addr)
	case opAddrAdd:
		return fmt.Sprintf("ip addr replace %s %s", op.Prefix, dev)
	case opAddrDelete:
		return fmt.Sprintf("ip addr del %s %s", op.Prefix, dev)
	case opRouteAdd:
		return fmt.Sprintf("ip route replace %s %s proto static scope global", op.Prefix.Masked(), dev)
	case opRouteDelete:
		return fmt.Sprintf("ip route del %s %s proto static", op.Prefix.Masked(), dev)
	}
	return fmt.Sprintf("# unknown change %d of %s", op.Kind, l.Name)
}

// addCommand is `ip link add` for l with the identity kernelTable.Add
// gives it; the settable attributes follow as opMTU and the rest.
func addCommand(l Link) string {
	head := fmt.Sprintf("ip link add name %s mtu %d type ", shellWord(l.Name), l.MTU)
	switch l.Kind {
	case KindWireGuard:
		// Where the kernel has no WireGuard, the helper runs wireguard-go
		// in its daemon instead, configured the same way.
		return head + "wireguard"
	case KindBridge:
		return head + "bridge"
	case KindGretap:
		return head + fmt.Sprintf("gretap key %d local %s remote %s pmtudisc", l.Key, l.Local, l.Remote)
	case KindVXLAN:
		learning := "nolearning"
		if l.Learning {
			learning = "learning"
		}
		return head + fmt.Sprintf("vxlan id %d local %s dev %s dstport %d %s", l.Key, l.Local, shellWord(l.Dev), l.Port, learning)
	}
	return fmt.Sprintf("# add %s: unknown kind %q", l.Name, l.Kind)
}

// shellWord quotes s as one word for a POSIX shell, when it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sysctlCommand sets one kernel setting.
func sysctlCommand(key, value string) string {
	return "sysctl -w " + shellWord(key+"="+value)
}

// newKeyCommand makes a WireGuard private key at path by hand as the
// helper does: mode 0600, put in place of the old one in one rename.
func newKeyCommand(path string) string {
	p := shellWord(path)
	return fmt.Sprintf("(umask 077 && wg genkey > %[1]s.new && mv %[1]s.new %[1]s)", p)
}

// wgCommands renders the WireGuard configuration Apply hands wgctrl as
// `wg set` commands. The private key never shows: keyFile is where the
// machine keeps it ("" when it has none yet: the helper makes it first).
func wgCommands(cfg wgtypes.Config, keyFile string) []string {
	var out []string
	var head []string
	if cfg.PrivateKey != nil {
		if keyFile == "" {
			keyFile = "<private key the helper makes on the machine>"
		}
		head = append(head, "private-key", shellWord(keyFile))
	}
	if cfg.ListenPort != nil {
		head = append(head, "listen-port", strconv.Itoa(*cfg.ListenPort))
	}
	if len(head) > 0 {
		out = append(out, "wg set "+WireGuardName+" "+strings.Join(head, " "))
	}
	for _, p := range cfg.Peers {
		cmd := "wg set " + WireGuardName + " peer " + shellWord(p.PublicKey.String())
		if p.Remove {
			out = append(out, cmd+" remove")
			continue
		}
		if p.Endpoint != nil {
			cmd += " endpoint " + p.Endpoint.String()
		}
		if p.PersistentKeepaliveInterval != nil {
			ka := "off"
			if s := int(p.PersistentKeepaliveInterval.Seconds()); s > 0 {
				ka = strconv.Itoa(s)
			}
			cmd += " persistent-keepalive " + ka
		}
		if p.ReplaceAllowedIPs || len(p.AllowedIPs) > 0 {
			ips := make([]string, len(p.AllowedIPs))
			for i, n := range p.AllowedIPs {
				ips[i] = n.String()
			}
			cmd += " allowed-ips " + shellWord(strings.Join(ips, ","))
		}
		out = append(out, cmd)
	}
	return out
}
