package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

// listTimeout bounds how long a list waits for a machine.
const listTimeout = 10 * time.Second

func (s *session) machineCommand() *cobra.Command {
	return noun("machine", "Add, list and remove machines, and rotate their keys", s.machineAddCommand(), s.machineListCommand(),
		s.machineRemoveCommand(), s.machineRotateCommand())
}

func (s *session) machineRemoveCommand() *cobra.Command {
	var force, wait, dry bool
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Take a machine out of the cloud",
		Long: "Take a machine out of the cloud: its VMs and links are torn down and every other machine drops it.\n" +
			"A machine that does not answer is only removed with --force, which drops it without touching it\n" +
			"(its VMs are written off) and drops its key everywhere.",
		Args: oneName("machine"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				if dry {
					d, err := cl.DryRunRemoveMachine(cmd.Context(), args[0], force)
					if err != nil {
						return err
					}
					return s.printDryRun("machine remove "+args[0], d)
				}
				r, err := cl.RemoveMachine(cmd.Context(), args[0], force, s.steps)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.stdout, "machine %s removed\n", args[0])
				if len(r.WrittenOff) > 0 {
					fmt.Fprintf(s.stdout, "written off with it (never touched): vm %s\n", strings.Join(r.WrittenOff, ", vm "))
				}
				if t := r.StillTrusting(); len(t) > 0 {
					s.stillTrusting(t, args[0])
				}
				return s.behind(r.Outcome, wait)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "drop a machine that does not answer, without touching it")
	waitFlag(cmd, &wait)
	dryRunFlag(cmd, &dry)
	return cmd
}

// stillTrusting warns that the away machines named still hold removed's
// key, and says how to close that.
func (s *session) stillTrusting(away []string, removed string) {
	verb, when := "holds", "it comes back and catches up"
	if len(away) > 1 {
		verb, when = "hold", "they come back and catch up"
	}
	fmt.Fprintf(s.stderr, "butter: %s still %s %s's key until %s; to be sure %s can never reach them, "+
		"rotate every key then: butter machine rotate-key --all\n", strings.Join(away, ", "), verb, removed, when, removed)
}

func (s *session) machineRotateCommand() *cobra.Command {
	var all, wait, dry bool
	cmd := &cobra.Command{
		Use:   "rotate-key [NAME] [--all]",
		Short: "Give a machine (or every machine) a new WireGuard key",
		Long: "Give a machine a new WireGuard key, made on the machine (it never leaves it), and update every peer.\n" +
			"Traffic across the machine pauses for about a handshake.",
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case all && len(args) > 0:
				return usageErrorf("give a machine's name or --all, not both")
			case !all && len(args) != 1:
				return usageErrorf("name the machine whose key to rotate, or give --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				if dry {
					d, err := cl.DryRunRotateKey(cmd.Context(), args)
					if err != nil {
						return err
					}
					return s.printDryRun(strings.Join(append([]string{"machine rotate-key"}, args...), " "), d)
				}
				r, err := cl.RotateKey(cmd.Context(), args, s.steps)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.stdout, "new key on %s\n", strings.Join(r.Rotated, ", "))
				for _, b := range r.NotRotated {
					fmt.Fprintf(s.stderr, "butter: machine %s kept its key: %s\n", b.Machine, printable.String(fmt.Sprint(b.Err)))
				}
				if len(r.NotRotated) > 0 && wait {
					return fmt.Errorf("%d machines kept their keys (--wait)", len(r.NotRotated))
				}
				return s.behind(r.Outcome, wait)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "rotate every machine's key")
	waitFlag(cmd, &wait)
	dryRunFlag(cmd, &dry)
	return cmd
}

func (s *session) machineAddCommand() *cobra.Command {
	var (
		nm        cloud.NewMachine
		acceptNew bool
		pinned    string
		wait, dry bool
	)
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a machine reached over SSH: install the helper and join the mesh",
		Args:  oneName("machine"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if acceptNew && pinned != "" {
				return usageErrorf("give --accept-new-host-key or --host-key, not both")
			}
			nm.Name = args[0]
			if dry {
				return s.withCloud(func(cl *cloud.Cloud) error {
					p, err := cl.DryRunAddMachine(nm)
					if err != nil {
						return err
					}
					return s.printAddition(p)
				})
			}
			return s.machineAdd(cmd.Context(), nm, acceptNew, pinned, wait)
		},
	}
	f := cmd.Flags()
	f.StringVar(&nm.Address, "address", "", "SSH host: a name, an ~/.ssh/config alias or an IP")
	f.IntVar(&nm.Port, "port", 0, "SSH port (default 22, or ~/.ssh/config's)")
	f.StringVar(&nm.User, "user", "", "SSH user (default ~/.ssh/config's, or yours)")
	f.StringVar(&nm.Identity, "identity", "", "SSH private key `FILE` (default: the agent and ~/.ssh/config)")
	f.StringVar(&nm.Endpoint, "endpoint", "", "`HOST:PORT` the other machines use for WireGuard")
	f.StringVar(&nm.Accel, "accel", "", "VM accelerator: auto, kvm or tcg")
	f.BoolVar(&acceptNew, "accept-new-host-key", false, "trust the host key if the machine is new to you")
	f.StringVar(&pinned, "host-key", "", "trust only this host key (`SHA256:...` as ssh-keygen -l prints it)")
	f.BoolVar(&s.yes, "yes", false, "install missing prerequisites without asking")
	waitFlag(cmd, &wait)
	dryRunFlag(cmd, &dry)
	require(cmd, "address")
	return cmd
}

func (s *session) machineAdd(ctx context.Context, nm cloud.NewMachine, acceptNew bool, pinned string, wait bool) error {
	trust := s.trust(acceptNew, pinned)
	cl, err := s.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	m, out, err := cl.AddMachine(ctx, nm, trust, s.steps)
	if err != nil {
		if !s.interactive && !acceptNew && pinned == "" && strings.Contains(err.Error(), "unknown host key") {
			return fmt.Errorf("%w\nwithout a terminal butter cannot ask: pass --accept-new-host-key, or --host-key SHA256:... to pin the key", err)
		}
		return err
	}
	fmt.Fprintf(s.stdout, "machine %s added: mesh address %s\n", m.Name, m.MeshIP)
	return s.behind(out, wait)
}

// trust is how host keys new to the user are treated: as the flags say,
// else asked at the terminal, else refused.
func (s *session) trust(acceptNew bool, pinned string) cloud.Trust {
	trust := cloud.Trust{AcceptNew: acceptNew, Pinned: pinned}
	if !acceptNew && pinned == "" && s.interactive {
		trust.Ask = func(ctx context.Context, host, fp string) (bool, error) {
			return s.ask(fmt.Sprintf("%s is new to you. Its host key is %s.\nCheck it on the machine (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub). Trust it?", host, fp))
		}
	}
	return trust
}

func (s *session) machineListCommand() *cobra.Command {
	return s.listCommand("List the machines and how they are", s.machineList)
}

func (s *session) machineList(ctx context.Context, cl *cloud.Cloud, o listOptions) error {
	ms, err := cl.Machines(ctx, o.wait)
	if err != nil {
		return err
	}
	type row struct {
		Name          string   `json:"name"`
		Address       string   `json:"address"`
		Status        string   `json:"status"`
		Problem       string   `json:"problem,omitempty"`
		Notes         []string `json:"notes,omitempty"`
		MeshIP        string   `json:"mesh_ip"`
		HelperVersion string   `json:"helper_version"`
		NAT           bool     `json:"nat"`
		Pending       bool     `json:"pending"`
		Confirmed     int      `json:"confirmed"`
		Generation    int      `json:"generation"`
	}
	rows := []row{}
	var text [][]string
	var silent []string
	for _, m := range ms {
		rows = append(rows, row{m.Name, m.Address, m.Status, m.Problem, m.Notes, m.MeshIP, m.HelperVersion, m.NAT, m.Pending, m.Confirmed, m.Generation})
		status := m.Status
		if m.Pending {
			status += ", pending"
		}
		problem := strings.Join(append([]string{m.Problem}, m.Notes...), "; ")
		text = append(text, []string{m.Name, m.Address, status, m.MeshIP, m.HelperVersion, strings.TrimPrefix(problem, "; ")})
		if m.Status == cloud.StatusOffline {
			silent = append(silent, m.Name)
		}
	}
	if o.json {
		if err := s.printJSON(rows); err != nil {
			return err
		}
	} else if err := s.table("NAME\tADDRESS\tSTATUS\tMESH IP\tHELPER\tPROBLEM", text); err != nil {
		return err
	}
	return s.silent(silent, len(ms))
}

// silent names the machines that did not answer, on stderr; when none of
// total answered, the listing knows nothing live and that is an error.
func (s *session) silent(names []string, total int) error {
	if len(names) == 0 {
		return nil
	}
	fmt.Fprintf(s.stderr, "butter: no answer from %s\n", strings.Join(names, ", "))
	if len(names) == total {
		return fmt.Errorf("no machine answered")
	}
	return nil
}
