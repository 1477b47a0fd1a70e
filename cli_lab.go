package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"net/netip"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/lab"
)

func (c *cli) lab(args []string) error {
	if len(args) == 0 {
		return errors.New("butter lab: give up or down")
	}
	switch args[0] {
	case "up":
		fs := c.flags("lab up", "butter lab up [--machines N] [--nat K]")
		var o lab.CloudOptions
		fs.StringVar(&o.Name, "name", lab.CloudName, "the lab's name (labs up at once need their own names and underlays)")
		underlay := fs.String("underlay", lab.DefaultUnderlay.String(), "the lab's underlay prefix")
		add := fs.Bool("add", true, "add the machines to the lab's inventory (false: leave them for `butter machine add`)")
		fs.IntVar(&o.Machines, "machines", 3, "machines on the shared underlay")
		fs.IntVar(&o.NAT, "nat", 0, "more machines behind a NAT router")
		fs.StringVar(&o.Accel, "accel", "tcg", "VM accelerator in the lab's machines: tcg, kvm or auto")
		demo := fs.Bool("demo", true, "create a network across the machines and a tiny VM on it")
		open := fs.Bool("open", true, "open the dashboard on the lab afterwards (at a terminal)")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		o.Demo, o.NoAdd = *demo && *add, !*add
		var err error
		if o.Underlay, err = netip.ParsePrefix(*underlay); err != nil {
			return fmt.Errorf("--underlay %q: want a prefix such as 10.250.0.0/24", *underlay)
		}
		lc, err := lab.StartCloud(c.ctx, o, c.steps)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "lab %s up: %d machines. Its inventory is %s;\n", lc.Name, o.Machines+o.NAT, lc.Inventory)
		fmt.Fprintf(c.stdout, "butter uses it while no inventory of your own exists (or: export BUTTER_INVENTORY=%s).\n", lc.Inventory)
		fmt.Fprintf(c.stdout, "Tiny VMs: --image %s\n", lc.TinyImage)
		if *open && c.interactive {
			c.inventory = lc.Inventory
			return c.dashboard()
		}
		return nil
	case "down":
		fs := c.flags("lab down", "butter lab down [--name NAME]")
		name := fs.String("name", lab.CloudName, "the lab's name")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		if err := lab.StopCloud(c.ctx, *name); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "lab down")
		return nil
	}
	return fmt.Errorf("butter lab %s: unknown; give up or down", args[0])
}

// inventoryPath is the inventory to use: --inventory, $BUTTER_INVENTORY,
// the default file, or, while none of those exists, the lab's.
func (c *cli) inventoryPath() (string, error) {
	if c.inventory != "" {
		return c.inventory, nil
	}
	path, err := inventory.Path()
	if err != nil {
		return "", err
	}
	if os.Getenv("BUTTER_INVENTORY") == "" {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if lc, ok := lab.FindCloud(""); ok {
				return lc.Inventory, nil
			}
		}
	}
	return path, nil
}

// connectorFor is how to reach the machines of the inventory at path: a
// lab's own key and known_hosts for a lab's inventory, SSH as the user has
// it otherwise.
func (c *cli) connectorFor(path string) cloud.Connector {
	if lc, ok := labOf(path); ok {
		self, _ := os.Executable()
		return lc.Connector(self)
	}
	return c.sshConnector()
}

// labOf finds the lab whose inventory is at path.
func labOf(path string) (lab.CloudLab, bool) {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(path), "lab.json"))
	if err != nil {
		return lab.CloudLab{}, false
	}
	var lc lab.CloudLab
	if json.Unmarshal(b, &lc) != nil || lc.Inventory != path {
		return lab.CloudLab{}, false
	}
	return lab.FindCloud(lc.Name)
}
