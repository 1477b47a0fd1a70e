package cli

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/lab"
)

func (s *session) labCommand() *cobra.Command {
	return noun("lab", "A lab cloud of simulated machines on this computer (needs root)", s.labUpCommand(), s.labDownCommand())
}

// labUpFlags are `lab up`'s flags beside lab.CloudOptions.
type labUpFlags struct {
	underlay        string
	add, demo, open bool
}

func (s *session) labUpCommand() *cobra.Command {
	var (
		o  lab.CloudOptions
		lf labUpFlags
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build a lab: machines in network namespaces, added to the lab's inventory",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Demo, o.NoAdd = lf.demo && lf.add, !lf.add
			var err error
			if o.Underlay, err = netip.ParsePrefix(lf.underlay); err != nil {
				return usageErrorf("--underlay %q: want a prefix such as 10.250.0.0/24", lf.underlay)
			}
			return s.labUp(cmd.Context(), o, lf.open)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", lab.CloudName, "the lab's name (labs up at once need their own names and underlays)")
	f.StringVar(&lf.underlay, "underlay", lab.DefaultUnderlay.String(), "the lab's underlay prefix")
	f.BoolVar(&lf.add, "add", true, "add the machines to the lab's inventory (false: leave them for butter machine add)")
	f.IntVar(&o.Machines, "machines", 3, "machines on the shared underlay")
	f.IntVar(&o.NAT, "nat", 0, "more machines behind a NAT router")
	f.StringVar(&o.Accel, "accel", "tcg", "VM accelerator in the lab's machines: tcg, kvm or auto")
	f.BoolVar(&lf.demo, "demo", true, "create a network across the machines and a tiny VM on it")
	f.BoolVar(&lf.open, "open", true, "open the lab's dashboard afterwards, or at once when the lab is up already (at a terminal)")
	return cmd
}

// labUp builds the lab, or finds it up already, and opens its dashboard
// when asked to at a terminal.
func (s *session) labUp(ctx context.Context, o lab.CloudOptions, open bool) error {
	lc, up := lab.FindCloud(o.Name)
	if up {
		fmt.Fprintf(s.stdout, "lab %s is up already (butter lab down --name %s, then up, builds it anew). Its inventory is %s.\n",
			lc.Name, lc.Name, lc.Inventory)
	} else {
		var err error
		if lc, err = lab.StartCloud(ctx, o, s.steps); err != nil {
			return err
		}
		fmt.Fprintf(s.stdout, "lab %s up: %d machines. Its inventory is %s;\n", lc.Name, o.Machines+o.NAT, lc.Inventory)
		fmt.Fprintf(s.stdout, "butter uses it while no inventory of your own exists (or: export BUTTER_INVENTORY=%s).\n", lc.Inventory)
	}
	fmt.Fprintf(s.stdout, "Tiny VMs: --image %s\n", lc.TinyImage)
	if !open {
		return nil
	}
	if !s.interactive {
		fmt.Fprintln(s.stderr, "butter: no terminal, so no dashboard (--open=false says so quietly); butter --inventory "+lc.Inventory+" opens it at one")
		return nil
	}
	s.inventory = lc.Inventory
	if s.debug && s.closeLog != nil {
		// The dashboard owns the terminal: from here, the file only.
		s.closeLog()
		s.log, s.closeLog = openLog(false, s.stderr)
	}
	return s.dashboard(ctx)
}

func (s *session) labDownCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove a lab and every trace of it",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.StopCloud(cmd.Context(), name); err != nil {
				return err
			}
			fmt.Fprintln(s.stdout, "lab down")
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", lab.CloudName, "the lab's name")
	return cmd
}
