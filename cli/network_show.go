package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

func (s *session) networkShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a network's links: direct or relayed, last handshake, round trip, bytes each way, why a broken one is",
		Args:  oneName("network"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				links, ns, err := networkLinks(cmd.Context(), cl, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					if links == nil {
						links = []cloud.LinkStatus{}
					}
					return s.printJSON(links)
				}
				fmt.Fprintf(s.stdout, "network %s (%s, id %d) on %s: %s, MTU %d\n", ns.Name, ns.Subnet, ns.ID,
					strings.Join(ns.Machines, ", "), ns.Tunnel, ns.MTU)
				return s.printLinks(links)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the links as one JSON array")
	return cmd
}

// networkLinks asks every machine for its facts and tells network name's
// links.
func networkLinks(ctx context.Context, cl *cloud.Cloud, name string) ([]cloud.LinkStatus, cloud.NetworkStatus, error) {
	inv, err := cl.Inventory()
	if err != nil {
		return nil, cloud.NetworkStatus{}, err
	}
	if _, ok := inv.Network(name); !ok {
		return nil, cloud.NetworkStatus{}, fmt.Errorf("no network %q; `butter network list` shows them", name)
	}
	ms, err := cl.Machines(ctx, listTimeout)
	if err != nil {
		return nil, cloud.NetworkStatus{}, err
	}
	links, err := cloud.NetworkLinks(inv, ms, name)
	if err != nil {
		return nil, cloud.NetworkStatus{}, err
	}
	for _, n := range cloud.Networks(inv, ms) {
		if n.Name == name {
			return links, n, nil
		}
	}
	return links, cloud.NetworkStatus{Name: name}, nil
}

// printLinks prints one row per link, then why each broken one is.
func (s *session) printLinks(links []cloud.LinkStatus) error {
	if len(links) == 0 {
		fmt.Fprintln(s.stdout, "one machine: no links")
		return nil
	}
	var rows [][]string
	for _, l := range links {
		rows = append(rows, []string{l.A + " – " + l.B, l.Path(), l.Handshake(), l.RTT(), cloud.Bytes(l.BytesAB), cloud.Bytes(l.BytesBA), l.State})
	}
	if err := s.table("LINK\tPATH\tHANDSHAKE\tRTT\tA→B\tB→A\tSTATE", rows); err != nil {
		return err
	}
	writeWhy(s.stdout, links)
	return nil
}

func writeWhy(w io.Writer, links []cloud.LinkStatus) {
	for _, l := range links {
		if l.State != cloud.LinkOK {
			fmt.Fprintf(w, "%s – %s %s: %s\n", l.A, l.B, l.State, printable.String(l.Why))
		}
	}
}
