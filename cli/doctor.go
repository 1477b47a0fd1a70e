package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/printable"
)

func (s *session) doctorCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check every machine and every network's links; exit 1 when one fails",
		Long: "Ask every machine for its state, then check each pair of every network's members: a link that\n" +
			"fails says why in words (no handshake: UDP blocked or a wrong endpoint). Exits 1 when a machine\n" +
			"does not answer or a link is down.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return s.withCloud(func(cl *cloud.Cloud) error {
				inv, err := cl.Inventory()
				if err != nil {
					return err
				}
				ms, err := cl.Machines(cmd.Context(), listTimeout)
				if err != nil {
					return err
				}
				var failed []string
				for _, m := range ms {
					switch m.Status {
					case cloud.StatusOnline:
						fmt.Fprintf(s.stdout, "machine %s: ok\n", m.Name)
					case cloud.StatusOffline:
						failed = append(failed, "machine "+m.Name)
						fmt.Fprintf(s.stdout, "machine %s: FAIL: does not answer: %s\n", m.Name, printable.String(m.Problem))
					default:
						fmt.Fprintf(s.stdout, "machine %s: %s: %s\n", m.Name, m.Status, printable.String(m.Problem))
					}
				}
				for _, n := range inv.Networks {
					links, err := cloud.NetworkLinks(inv, ms, n.Name)
					if err != nil {
						return err
					}
					bad := 0
					for _, l := range links {
						if l.State != cloud.LinkOK {
							bad++
						}
						if l.Failed() {
							failed = append(failed, fmt.Sprintf("network %s link %s–%s", n.Name, l.A, l.B))
						}
					}
					if bad == 0 {
						fmt.Fprintf(s.stdout, "network %s: ok (%d links)\n", n.Name, len(links))
						continue
					}
					fmt.Fprintf(s.stdout, "network %s: %d of %d links not ok\n", n.Name, bad, len(links))
					writeWhy(s.stdout, links)
				}
				if len(failed) > 0 {
					return fmt.Errorf("%d checks failed: %s", len(failed), strings.Join(failed, ", "))
				}
				fmt.Fprintln(s.stdout, "all checks passed")
				return nil
			})
		},
	}
}
