package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// listTimeout bounds how long a list waits for a machine.
const listTimeout = 10 * time.Second

func (c *cli) machine(args []string) error {
	if len(args) == 0 {
		return errors.New("butter machine: give add, list or remove")
	}
	switch args[0] {
	case "add":
		return c.machineAdd(args[1:])
	case "list":
		return c.machineList(args[1:])
	case "remove":
		name, err := c.oneName("machine remove", args[1:])
		if err != nil {
			return err
		}
		return c.withCloud(func(cl *cloud.Cloud) error { return cl.RemoveMachine(c.ctx, name, c.steps) })
	}
	return fmt.Errorf("butter machine %s: unknown; give add, list or remove", args[0])
}

func (c *cli) machineAdd(args []string) error {
	fs := c.flags("machine add", "butter machine add NAME --address HOST [--port N] [--user U] [--identity FILE] [--endpoint HOST:PORT] [--accept-new-host-key | --host-key SHA256:...] [--yes]")
	var nm cloud.NewMachine
	fs.StringVar(&nm.Address, "address", "", "SSH host: a name, an ~/.ssh/config alias or an IP")
	fs.IntVar(&nm.Port, "port", 0, "SSH port (default 22, or ~/.ssh/config's)")
	fs.StringVar(&nm.User, "user", "", "SSH user (default ~/.ssh/config's, or yours)")
	fs.StringVar(&nm.Identity, "identity", "", "SSH private key file (default: the agent and ~/.ssh/config)")
	fs.StringVar(&nm.Endpoint, "endpoint", "", "HOST:PORT the other machines use for WireGuard")
	fs.StringVar(&nm.Accel, "accel", "", "VM accelerator: auto, kvm or tcg")
	acceptNew := fs.Bool("accept-new-host-key", false, "trust the host key if the machine is new to you")
	pinned := fs.String("host-key", "", "trust only this host key (SHA256:... as ssh-keygen -l prints it)")
	yes := fs.Bool("yes", false, "install missing prerequisites without asking")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || nm.Address == "" {
		fs.Usage()
		return errors.New("butter machine add: give the machine's name and --address")
	}
	if *acceptNew && *pinned != "" {
		return errors.New("butter machine add: give --accept-new-host-key or --host-key, not both")
	}
	nm.Name = pos[0]
	trust := cloud.Trust{AcceptNew: *acceptNew, Pinned: *pinned}
	if !*acceptNew && *pinned == "" && c.interactive {
		trust.Ask = func(ctx context.Context, host, fp string) (bool, error) {
			return c.ask(fmt.Sprintf("%s is new to you. Its host key is %s.\nCheck it on the machine (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub). Trust it?", host, fp))
		}
	}
	c.yes = *yes
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	m, err := cl.AddMachine(c.ctx, nm, trust, c.steps)
	if err != nil {
		if !c.interactive && !*acceptNew && *pinned == "" && strings.Contains(err.Error(), "unknown host key") {
			return fmt.Errorf("%w\nwithout a terminal butter cannot ask: pass --accept-new-host-key, or --host-key SHA256:... to pin the key", err)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "machine %s added: mesh address %s\n", m.Name, m.MeshIP)
	return nil
}

func (c *cli) machineList(args []string) error {
	fs := c.flags("machine list", "butter machine list [--json]")
	asJSON := fs.Bool("json", false, "print one JSON array")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	ms, err := cl.Machines(c.ctx, listTimeout)
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
	if *asJSON {
		return c.printJSON(rows)
	}
	return c.table("NAME\tADDRESS\tSTATUS\tMESH IP\tHELPER\tPROBLEM", text)
}

func (c *cli) network(args []string) error {
	if len(args) == 0 {
		return errors.New("butter network: give create, list or remove")
	}
	switch args[0] {
	case "create":
		fs := c.flags("network create", "butter network create NAME --subnet CIDR [--machines A,B,...] [--tunnel auto|gretap|vxlan]")
		subnet := fs.String("subnet", "", "the network's IPv4 range, e.g. 10.20.0.0/24 (default: a free /24)")
		machines := fs.String("machines", "", "member machines, comma-separated (default: all)")
		tunnel := fs.String("tunnel", "", "tunnel kind: auto (default), gretap or vxlan")
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return errors.New("butter network create: give the network's name")
		}
		nn := cloud.NewNetwork{Name: pos[0], Tunnel: *tunnel}
		if *subnet != "" {
			if nn.Subnet, err = netip.ParsePrefix(*subnet); err != nil {
				return fmt.Errorf("--subnet %q: want a range such as 10.20.0.0/24", *subnet)
			}
		}
		if *machines != "" {
			nn.Machines = strings.Split(*machines, ",")
		}
		cl, err := c.open()
		if err != nil {
			return err
		}
		defer cl.Close()
		n, err := cl.CreateNetwork(c.ctx, nn, c.steps)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "network %s created: %s on %s\n", n.Name, n.Subnet, strings.Join(n.Machines, ", "))
		return nil
	case "list":
		fs := c.flags("network list", "butter network list [--json]")
		asJSON := fs.Bool("json", false, "print one JSON array")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		cl, err := c.open()
		if err != nil {
			return err
		}
		defer cl.Close()
		inv, err := cl.Inventory()
		if err != nil {
			return err
		}
		ms, _ := cl.Machines(c.ctx, listTimeout)
		ns := cloud.Networks(inv, ms)
		if *asJSON {
			if ns == nil {
				ns = []cloud.NetworkStatus{}
			}
			return c.printJSON(ns)
		}
		var text [][]string
		for _, n := range ns {
			text = append(text, []string{n.Name, n.Subnet, fmt.Sprint(n.MTU), n.Tunnel, strings.Join(n.Machines, ",")})
		}
		return c.table("NAME\tSUBNET\tMTU\tTUNNEL\tMACHINES", text)
	case "remove":
		name, err := c.oneName("network remove", args[1:])
		if err != nil {
			return err
		}
		return c.withCloud(func(cl *cloud.Cloud) error { return cl.RemoveNetwork(c.ctx, name, c.steps) })
	}
	return fmt.Errorf("butter network %s: unknown; give create, list or remove", args[0])
}

func (c *cli) vm(args []string) error {
	if len(args) == 0 {
		return errors.New("butter vm: give create, list, start, stop, reboot, remove or console")
	}
	switch args[0] {
	case "create":
		return c.vmCreate(args[1:])
	case "list":
		fs := c.flags("vm list", "butter vm list [--json]")
		asJSON := fs.Bool("json", false, "print one JSON array")
		if _, err := parse(fs, args[1:]); err != nil {
			return err
		}
		cl, err := c.open()
		if err != nil {
			return err
		}
		defer cl.Close()
		vms, err := cl.VMs(c.ctx, listTimeout)
		if err != nil {
			fmt.Fprintln(c.stderr, "butter:", err)
		}
		if *asJSON {
			if vms == nil {
				vms = []cloud.VMStatus{}
			}
			return c.printJSON(vms)
		}
		var text [][]string
		for _, v := range vms {
			text = append(text, []string{v.Name, v.Machine, v.Network, v.IP, v.State, fmt.Sprint(v.CPUs), fmt.Sprintf("%d MiB", v.MemoryMiB)})
		}
		return c.table("NAME\tMACHINE\tNETWORK\tIP\tSTATE\tCPUS\tMEMORY", text)
	case "start", "stop", "reboot", "remove":
		action := args[0]
		fs := c.flags("vm "+action, "butter vm "+action+" NAME")
		timeout := fs.Duration("timeout", 30*time.Second, "stop: how long the guest gets to shut down before the plug is pulled")
		pos, err := parse(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return fmt.Errorf("butter vm %s: give the VM's name", action)
		}
		cl, err := c.open()
		if err != nil {
			return err
		}
		defer cl.Close()
		res, err := cl.VMAction(c.ctx, pos[0], action, *timeout)
		if err == nil && res.Forced {
			fmt.Fprintf(c.stderr, "vm %s did not shut down within %s: pulled the plug\n", pos[0], *timeout)
		}
		return err
	case "console":
		return c.vmConsole(args[1:])
	}
	return fmt.Errorf("butter vm %s: unknown; give create, list, start, stop, reboot, remove or console", args[0])
}

func (c *cli) vmCreate(args []string) error {
	fs := c.flags("vm create", "butter vm create NAME --machine M --network N --image IMAGE [--cpus N] [--memory SIZE] [--disk SIZE] [--ip ADDR] [--ssh-key FILE]")
	var nv cloud.NewVM
	fs.StringVar(&nv.Machine, "machine", "", "the machine to run on")
	fs.StringVar(&nv.Network, "network", "", "the private network")
	fs.StringVar(&nv.Image, "image", "", "debian-12, ubuntu-24.04, an https URL, a file, or kernel=PATH,initrd=PATH[,cmdline=ARGS]")
	fs.IntVar(&nv.CPUs, "cpus", 1, "virtual CPUs")
	memory := fs.String("memory", "512M", "memory, e.g. 512M or 2G")
	disk := fs.String("disk", "", "disk size, e.g. 20G (default: the image's own)")
	ip := fs.String("ip", "", "the VM's address (default: the next free one)")
	var keys []string
	fs.Func("ssh-key", "an SSH public key file to authorize (repeatable; default ~/.ssh/id_*.pub)", func(s string) error {
		b, err := os.ReadFile(s)
		if err != nil {
			return err
		}
		keys = append(keys, strings.TrimSpace(string(b)))
		return nil
	})
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || nv.Machine == "" || nv.Network == "" || nv.Image == "" {
		fs.Usage()
		return errors.New("butter vm create: give the VM's name, --machine, --network and --image")
	}
	nv.Name, nv.SSHKeys = pos[0], keys
	if nv.MemoryMiB, err = parseSize(*memory, "M"); err != nil {
		return fmt.Errorf("--memory: %w", err)
	}
	if *disk != "" {
		mib, err := parseSize(*disk, "G")
		if err != nil {
			return fmt.Errorf("--disk: %w", err)
		}
		nv.DiskGiB = (mib + 1023) / 1024
	}
	if *ip != "" {
		if nv.Address, err = netip.ParseAddr(*ip); err != nil {
			return fmt.Errorf("--ip %q: want an address such as 10.20.0.5", *ip)
		}
	}
	if len(nv.SSHKeys) == 0 {
		nv.SSHKeys = defaultSSHKeys()
	}
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	last := time.Time{}
	v, err := cl.CreateVM(c.ctx, nv, func(p helperapi.Progress) {
		if time.Since(last) > time.Second || p.Done == p.Total {
			last = time.Now()
			fmt.Fprintf(c.stderr, "%s %s: %s\n", p.Phase, p.Name, progressText(p))
		}
	}, c.steps)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "vm %s created on %s: %s, %s\n", v.Name, v.Machine, v.IP, v.State)
	return nil
}

func progressText(p helperapi.Progress) string {
	if p.Total <= 0 {
		return fmt.Sprintf("%d MiB", p.Done>>20)
	}
	return fmt.Sprintf("%d%% of %d MiB", p.Done*100/p.Total, p.Total>>20)
}

// defaultSSHKeys are the operator's public keys in ~/.ssh.
func defaultSSHKeys() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var keys []string
	for _, n := range []string{"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"} {
		if b, err := os.ReadFile(home + "/.ssh/" + n); err == nil {
			keys = append(keys, strings.TrimSpace(string(b)))
		}
	}
	return keys
}

func (c *cli) vmConsole(args []string) error {
	fs := c.flags("vm console", "butter vm console NAME [--idle 2s]")
	idle := fs.Duration("idle", 2*time.Second, "when standard input ends (a script), detach once the console has been quiet this long")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("butter vm console: give the VM's name")
	}
	cl, err := c.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	return attachConsole(c.ctx, cl, pos[0], *idle, c.stdin, c.stdout, c.stderr)
}
