package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

func (s *session) vmCommand() *cobra.Command {
	c := noun("vm", "Create, list, run and remove virtual machines, and reach their consoles",
		s.vmCreateCommand(), s.vmListCommand(), s.vmConsoleCommand(),
		s.vmSSHCommand(), s.vmProxyCommand(), s.vmSSHConfigCommand())
	for _, a := range []struct{ action, short string }{
		{"start", "Start a VM"},
		{"stop", "Shut a VM down, pulling the plug if it does not stop in time"},
		{"reboot", "Reboot a VM"},
		{"remove", "Remove a VM and its disk"},
	} {
		c.AddCommand(s.vmActionCommand(a.action, a.short))
	}
	return c
}

// vmList prints the VMs. Machines that do not answer are named on
// stderr, and the VMs the inventory records on them are listed with state
// unknown; the exit code is non-zero only when no machine answered (or
// the inventory does not load), so an empty list that exits 0 is a cloud
// with no VM.
func (s *session) vmListCommand() *cobra.Command {
	return s.listCommand("List the VMs on every machine", s.vmList)
}

func (s *session) vmList(ctx context.Context, cl *cloud.Cloud, o listOptions) error {
	vms, err := cl.VMs(ctx, o.wait)
	var away cloud.MachineErrors
	if err != nil && !errors.As(err, &away) {
		return err
	}
	if o.json {
		if vms == nil {
			vms = []cloud.VMStatus{}
		}
		if perr := s.printJSON(vms); perr != nil {
			return perr
		}
	} else {
		var text [][]string
		for _, v := range vms {
			cpus, mem := fmt.Sprint(v.CPUs), fmt.Sprintf("%d MiB", v.MemoryMiB)
			if v.State == cloud.VMUnknown || v.State == cloud.VMMissing { // only the inventory's record
				cpus, mem = "-", "-"
			}
			text = append(text, []string{v.Name, v.Machine, v.Network, v.IP, v.State, cpus, mem})
		}
		if perr := s.table("NAME\tMACHINE\tNETWORK\tIP\tSTATE\tCPUS\tMEMORY", text); perr != nil {
			return perr
		}
	}
	for _, name := range slices.Sorted(maps.Keys(away)) {
		fmt.Fprintf(s.stderr, "butter: machine %s did not answer (%v); its VMs are listed as %s\n", name, printable.String(fmt.Sprint(away[name])), cloud.VMUnknown)
	}
	if errors.Is(err, cloud.ErrNoAnswer) {
		return fmt.Errorf("no machine answered; the VMs listed are the inventory's, state %s", cloud.VMUnknown)
	}
	return nil
}

// vmActionCommand is `vm start|stop|reboot|remove NAME`.
func (s *session) vmActionCommand(action, short string) *cobra.Command {
	var timeout time.Duration
	var dry bool
	cmd := &cobra.Command{
		Use:   action + " NAME",
		Short: short,
		Args:  oneName("VM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				if dry {
					d, err := cl.DryRunVMAction(cmd.Context(), args[0], action)
					if err != nil {
						return err
					}
					return s.printDryRun("vm "+action+" "+args[0], d)
				}
				res, err := cl.VMAction(cmd.Context(), args[0], action, timeout)
				if err == nil && res.Forced {
					fmt.Fprintf(s.stderr, "vm %s did not shut down within %s: pulled the plug\n", args[0], timeout)
				}
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long the guest gets to shut down before the plug is pulled")
	dryRunFlag(cmd, &dry)
	if action != "stop" {
		_ = cmd.Flags().MarkHidden("timeout") // accepted, as it always was, but only stop uses it
	}
	return cmd
}

func (s *session) vmConsoleCommand() *cobra.Command {
	var idle time.Duration
	cmd := &cobra.Command{
		Use:   "console NAME",
		Short: "Attach to a VM's serial console (Ctrl+] or ~. detaches)",
		Args:  oneName("VM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				return attachConsole(cmd.Context(), cl, args[0], idle, s.stdin, s.stdout, s.stderr)
			})
		},
	}
	cmd.Flags().DurationVar(&idle, "idle", 2*time.Second, "when standard input ends (a script), detach once the console has been quiet this long")
	return cmd
}
