package plumbing

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftBufferSize is the socket buffer, each way, of the helper's nf_tables
// connections. A table is written whole, as one batch in one sendmsg, and
// each message is acknowledged: the default buffer (wmem_default, 208 KiB
// here) refused the table of a machine with 31 peers in ten networks
// ("message too long"). As nft(8) does for a large batch, the helper
// forces a larger one (it has CAP_NET_ADMIN); it is a limit, not memory
// taken.
const nftBufferSize = 64 << 20

// openNFT opens an nf_tables connection with nftBufferSize buffers, or the
// largest the system allows without CAP_NET_ADMIN.
func openNFT() (*nftables.Conn, error) {
	return nftables.New(nftables.WithSockOptions(func(nc *netlink.Conn) error {
		rc, err := nc.SyscallConn()
		if err != nil {
			return fmt.Errorf("nf_tables socket: %w", err)
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
				e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], nftBufferSize)
				if errors.Is(e, unix.EPERM) {
					e = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], nftBufferSize)
				}
				serr = errors.Join(serr, e)
			}
		})
		if err := errors.Join(err, serr); err != nil {
			return fmt.Errorf("size the nf_tables socket's buffers: %w", err)
		}
		return nil
	}))
}

// readTable reads the kernel's table of want's family and name: ok is
// false when there is none; otherwise each of its chains goes to chain,
// with its rules in order.
func readTable(want *nftables.Table, chain func(*nftables.Chain, []*nftables.Rule)) (dormant, ok bool, err error) {
	c, err := openNFT()
	if err != nil {
		return false, false, fmt.Errorf("open nftables: %w", err)
	}
	found, err := findTable(c, want)
	if err != nil || found == nil {
		return false, false, err
	}
	chains, err := c.ListChainsOfTableFamily(want.Family)
	if err != nil {
		return false, false, fmt.Errorf("list chains of table %s: %w", want.Name, err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != want.Name {
			continue
		}
		rules, err := c.GetRules(want, ch)
		if err != nil {
			return false, false, fmt.Errorf("list rules of chain %s in table %s: %w", ch.Name, want.Name, err)
		}
		chain(ch, rules)
	}
	return found.Flags&unix.NFT_TABLE_F_DORMANT != 0, true, nil
}

// findTable returns the kernel's table of want's family and name; nil
// when there is none.
func findTable(c *nftables.Conn, want *nftables.Table) (*nftables.Table, error) {
	tables, err := c.ListTablesOfFamily(want.Family)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return nil, fmt.Errorf("list nftables tables: %w; this kernel has no nf_tables loaded (modules nfnetlink and nf_tables), which the helper's firewall needs", err)
	}
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == want.Name {
			return t, nil
		}
	}
	return nil, nil
}

// chainHeader reads a base chain's hook (by its name in hooks, else its
// number), priority and policy.
func chainHeader(ch *nftables.Chain, hooks map[string]nftables.ChainHook) (hook string, prio int, policy string) {
	hook, policy = "none", "none"
	if ch.Hooknum != nil {
		hook = fmt.Sprint(uint32(*ch.Hooknum))
		for name, h := range hooks {
			if h == *ch.Hooknum {
				hook = name
			}
		}
	}
	if ch.Priority != nil {
		prio = int(*ch.Priority)
	}
	if ch.Policy != nil {
		policy = VerdictDrop
		if *ch.Policy == nftables.ChainPolicyAccept {
			policy = VerdictAccept
		}
	}
	return hook, prio, policy
}

// deleteTable removes the kernel's table t; one already gone is no error
// (added and deleted in one transaction: gone either way, no ENOENT).
func deleteTable(t *nftables.Table) error {
	c, err := openNFT()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete table %s: %w", t.Name, err)
	}
	return nil
}

// verdictExpr is a rule's verdict as an expression.
func verdictExpr(v string) (expr.Any, error) {
	switch v {
	case VerdictAccept:
		return &expr.Verdict{Kind: expr.VerdictAccept}, nil
	case VerdictDrop:
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	case VerdictMasquerade:
		return &expr.Masq{}, nil
	case VerdictNotrack:
		return &expr.Notrack{}, nil
	}
	return nil, fmt.Errorf("unknown verdict %q", v)
}
