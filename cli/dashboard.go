package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/lab"
	"github.com/butter-cloud/butter/tui"
)

// dashboard opens the TUI on the inventory.
func (s *session) dashboard(ctx context.Context) error {
	path, err := s.inventoryPath()
	if err != nil {
		return err
	}
	return tui.Run(ctx, tui.Options{
		Inventory: path,
		Connector: func(path string, ask tui.Ask) cloud.Connector {
			conn := s.connectorFor(path)
			if ssh, ok := conn.(cloud.SSH); ok && ssh.InstallPrerequisites != nil && !s.yes {
				// Ask in the dashboard, not on a terminal it owns.
				ssh.InstallPrerequisites = func(ctx context.Context, machine, missing, command string) (bool, error) {
					return ask(ctx, fmt.Sprintf("%s lacks %s. Install it?", machine, missing),
						"butter will run there, as root:\n  "+command)
				}
				conn = ssh
			}
			return conn
		},
		Images: func(path string) []tui.Image {
			if lc, ok := labOf(path); ok && lc.TinyImage != "" {
				return []tui.Image{{Label: "tiny guest (lab: kernel + busybox)", Source: lc.TinyImage}}
			}
			return nil
		},
		StartLab: func(ctx context.Context, steps func(cloud.Step)) (string, error) {
			if os.Geteuid() != 0 {
				return "", fmt.Errorf("a lab needs root (network namespaces); run `sudo butter lab up`")
			}
			lc, err := lab.StartCloud(ctx, lab.CloudOptions{Demo: true}, steps)
			if err != nil {
				return "", err
			}
			return lc.Inventory, nil
		},
	})
}
