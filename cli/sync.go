package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

func (s *session) syncCommand() *cobra.Command {
	var wait, dry bool
	cmd := &cobra.Command{
		Use:   "sync [MACHINE...]",
		Short: "Catch machines that were away up with the cloud",
		Long: "Give every pending machine (one that was away for a change) its configuration at the cloud's\n" +
			"generation; name machines to re-apply theirs whether pending or not.",
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				var only []string
				if len(args) > 0 {
					only = args
				}
				if dry {
					d, err := cl.DryRunSync(cmd.Context(), only)
					if err != nil {
						return err
					}
					return s.printDryRun("sync", d)
				}
				out, err := cl.Sync(cmd.Context(), only, s.steps)
				if err != nil {
					return err
				}
				switch {
				case len(out.Applied) > 0:
					fmt.Fprintf(s.stdout, "up to date at generation %d: %s\n", out.Generation, strings.Join(out.Applied, ", "))
				case len(out.Behind) == 0:
					fmt.Fprintf(s.stdout, "every machine is up to date (generation %d)\n", out.Generation)
				}
				// Sync records no change: say what is still behind.
				return s.stillBehind(out, wait, "%s could not apply its configuration (see above)", "%s %s still behind (--wait)")
			})
		},
	}
	waitFlag(cmd, &wait)
	dryRunFlag(cmd, &dry)
	return cmd
}

func (s *session) adoptCommand() *cobra.Command {
	var (
		from           cloud.AdoptFrom
		acceptNew, dry bool
	)
	cmd := &cobra.Command{
		Use:   "adopt --address HOST",
		Short: "Rebuild the inventory from the cloud's machines (a lost laptop, a second operator)",
		Long: "Every machine keeps a copy of the cloud's desired state. adopt reads the copy of the machine at\n" +
			"--address, then those of every machine it names, and writes the newest as the inventory (the one it\n" +
			"replaces is kept in the .bak). Host keys are checked as `machine add` checks them.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.adopt(cmd.Context(), from, acceptNew, dry)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from.Address, "address", "", "SSH host of one of the cloud's machines")
	f.IntVar(&from.Port, "port", 0, "its SSH port (default 22, or ~/.ssh/config's)")
	f.StringVar(&from.User, "user", "", "SSH user (default: ~/.ssh/config's, or yours)")
	f.StringVar(&from.Identity, "identity", "", "SSH private key `FILE` for every machine (default: the agent and ~/.ssh/config)")
	f.BoolVar(&acceptNew, "accept-new-host-key", false, "trust host keys of machines new to you")
	f.BoolVar(&dry, "dry-run", false, "write nothing: print the inventory adopt would write")
	require(cmd, "address")
	return cmd
}

func (s *session) adopt(ctx context.Context, from cloud.AdoptFrom, acceptNew, dry bool) error {
	trust := s.trust(acceptNew, "")
	return s.withCloud(func(cl *cloud.Cloud) error {
		adopt := cl.Adopt
		if dry {
			adopt = cl.DryRunAdopt
		}
		a, err := adopt(ctx, from, trust, s.steps)
		if err != nil {
			if !s.interactive && !acceptNew && strings.Contains(err.Error(), "unknown host key") {
				return fmt.Errorf("%w\nwithout a terminal butter cannot ask: pass --accept-new-host-key", err)
			}
			return err
		}
		if dry {
			return s.printAdoption(cl.Path(), a)
		}
		inv := a.Inventory
		fmt.Fprintf(s.stdout, "adopted generation %d from %s: %d machines, %d networks, %d VMs, in %s\n",
			inv.Generation, a.From, len(inv.Machines), len(inv.Networks), len(inv.VMs), cl.Path())
		for _, b := range a.Unreached {
			fmt.Fprintf(s.stderr, "butter: machine %s did not answer (%v): pending until `butter sync` reaches it\n", b.Machine, printable.String(fmt.Sprint(b.Err)))
		}
		return nil
	})
}
