package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
)

// listTimeout bounds how long a list waits for a machine.
const listTimeout = 10 * time.Second

func (s *session) machineCommand() *cobra.Command {
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Take a machine out of the cloud",
		Args:  oneName("machine"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error { return cl.RemoveMachine(cmd.Context(), args[0], s.steps) })
		},
	}
	return noun("machine", "Add, list and remove machines", s.machineAddCommand(), s.machineListCommand(), remove)
}

func (s *session) machineAddCommand() *cobra.Command {
	var (
		nm        cloud.NewMachine
		acceptNew bool
		pinned    string
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
			return s.machineAdd(cmd.Context(), nm, acceptNew, pinned)
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
	require(cmd, "address")
	return cmd
}

func (s *session) machineAdd(ctx context.Context, nm cloud.NewMachine, acceptNew bool, pinned string) error {
	trust := cloud.Trust{AcceptNew: acceptNew, Pinned: pinned}
	if !acceptNew && pinned == "" && s.interactive {
		trust.Ask = func(ctx context.Context, host, fp string) (bool, error) {
			return s.ask(fmt.Sprintf("%s is new to you. Its host key is %s.\nCheck it on the machine (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub). Trust it?", host, fp))
		}
	}
	cl, err := s.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	m, err := cl.AddMachine(ctx, nm, trust, s.steps)
	if err != nil {
		if !s.interactive && !acceptNew && pinned == "" && strings.Contains(err.Error(), "unknown host key") {
			return fmt.Errorf("%w\nwithout a terminal butter cannot ask: pass --accept-new-host-key, or --host-key SHA256:... to pin the key", err)
		}
		return err
	}
	fmt.Fprintf(s.stdout, "machine %s added: mesh address %s\n", m.Name, m.MeshIP)
	return nil
}

func (s *session) machineListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the machines and how they are",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error { return s.machineList(cmd.Context(), cl, asJSON) })
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	return cmd
}

func (s *session) machineList(ctx context.Context, cl *cloud.Cloud, asJSON bool) error {
	ms, err := cl.Machines(ctx, listTimeout)
	if err != nil {
		return err
	}
	type row struct {
		Name          string `json:"name"`
		Address       string `json:"address"`
		Status        string `json:"status"`
		Problem       string `json:"problem,omitempty"`
		MeshIP        string `json:"mesh_ip"`
		HelperVersion string `json:"helper_version"`
		NAT           bool   `json:"nat"`
	}
	rows := []row{}
	var text [][]string
	for _, m := range ms {
		rows = append(rows, row{m.Name, m.Address, m.Status, m.Problem, m.MeshIP, m.HelperVersion, m.NAT})
		text = append(text, []string{m.Name, m.Address, m.Status, m.MeshIP, m.HelperVersion, m.Problem})
	}
	if asJSON {
		return s.printJSON(rows)
	}
	return s.table("NAME\tADDRESS\tSTATUS\tMESH IP\tHELPER\tPROBLEM", text)
}
