package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

func (s *session) networkCommand() *cobra.Command {
	var wait, dry bool
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a network from every machine",
		Args:  oneName("network"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				if dry {
					d, err := cl.DryRunRemoveNetwork(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					return s.printDryRun("network remove "+args[0], d)
				}
				out, err := cl.RemoveNetwork(cmd.Context(), args[0], s.steps)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.stdout, "network %s removed\n", args[0])
				return s.behind(out, wait)
			})
		},
	}
	waitFlag(remove, &wait)
	dryRunFlag(remove, &dry)
	return noun("network", "Create, list, show, change and remove private networks", s.networkCreateCommand(), s.networkListCommand(), s.networkShowCommand(), s.networkSetCommand(), remove)
}

func (s *session) networkSetCommand() *cobra.Command {
	var egress, wait, dry bool
	cmd := &cobra.Command{
		Use:   "set NAME --egress=true|false",
		Short: "Change a network: egress to the internet on or off",
		Args:  oneName("network"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("egress") {
				return usageErrorf("network set %s: nothing to change; give --egress=true or --egress=false", args[0])
			}
			return s.withCloud(func(cl *cloud.Cloud) error {
				if dry {
					d, err := cl.DryRunSetEgress(cmd.Context(), args[0], egress)
					if err != nil {
						return err
					}
					return s.printDryRun("network set "+args[0], d)
				}
				out, err := cl.SetEgress(cmd.Context(), args[0], egress, s.steps)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.stdout, "network %s: egress %s\n", args[0], onOff(egress))
				return s.behind(out, wait)
			})
		},
	}
	cmd.Flags().BoolVar(&egress, "egress", false, "let the network's VMs out to the internet through their machine's uplink")
	waitFlag(cmd, &wait)
	dryRunFlag(cmd, &dry)
	return cmd
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (s *session) networkCreateCommand() *cobra.Command {
	var subnet, machines, tunnel string
	var wait, egress, dry bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a private network across machines",
		Args:  oneName("network"),
		RunE: func(cmd *cobra.Command, args []string) error {
			nn := cloud.NewNetwork{Name: args[0], Tunnel: tunnel, Egress: egress}
			if subnet != "" {
				var err error
				if nn.Subnet, err = netip.ParsePrefix(subnet); err != nil {
					return usageErrorf("--subnet %q: want a range such as 10.20.0.0/24", subnet)
				}
			}
			if machines != "" {
				nn.Machines = strings.Split(machines, ",")
			}
			return s.withCloud(func(cl *cloud.Cloud) error {
				if dry {
					n, d, err := cl.DryRunCreateNetwork(cmd.Context(), nn)
					if err != nil {
						return err
					}
					return s.printDryRun(fmt.Sprintf("network create %s (%s, id %d, on %s)", n.Name, n.Subnet, n.ID, strings.Join(n.Machines, ", ")), d)
				}
				n, out, err := cl.CreateNetwork(cmd.Context(), nn, s.steps)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.stdout, "network %s created: %s on %s\n", n.Name, n.Subnet, strings.Join(n.Machines, ", "))
				return s.behind(out, wait)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&subnet, "subnet", "", "the network's IPv4 range, e.g. 10.20.0.0/24 (default: a free /24)")
	f.StringVar(&machines, "machines", "", "member machines, comma-separated: `A,B,...` (default: all)")
	f.StringVar(&tunnel, "tunnel", "", "tunnel kind: auto (default), gretap or vxlan")
	f.BoolVar(&egress, "egress", false, "let the network's VMs out to the internet through their machine's uplink (masqueraded)")
	waitFlag(cmd, &wait)
	dryRunFlag(cmd, &dry)
	return cmd
}

func (s *session) networkListCommand() *cobra.Command {
	return s.listCommand("List the networks", s.networkList)
}

func (s *session) networkList(ctx context.Context, cl *cloud.Cloud, o listOptions) error {
	inv, err := cl.Inventory()
	if err != nil {
		return err
	}
	ms, _ := cl.Machines(ctx, o.wait)
	ns := cloud.Networks(inv, ms)
	if o.json {
		if ns == nil {
			ns = []cloud.NetworkStatus{}
		}
		return s.printJSON(ns)
	}
	var text [][]string
	for _, n := range ns {
		text = append(text, []string{n.Name, n.Subnet, n.Gateway, onOff(n.Egress), fmt.Sprint(n.MTU), n.Tunnel, strings.Join(n.Machines, ",")})
	}
	if err := s.table("NAME\tSUBNET\tGATEWAY\tEGRESS\tMTU\tTUNNEL\tMACHINES", text); err != nil {
		return err
	}
	for _, n := range ns {
		if n.Problem != "" {
			fmt.Fprintf(s.stderr, "butter: network %s: %s\n", n.Name, printable.String(n.Problem))
		}
	}
	return nil
}
