package tui

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

func validName(s string) error {
	if !helperapi.ValidName(s) {
		return errors.New(helperapi.NameRule)
	}
	return nil
}

// sshKeys lists the private keys in dir: files with a .pub beside them,
// or that look like a private key.
func sshKeys(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var keys []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasSuffix(n, ".pub") || n == "known_hosts" || n == "config" || n == "authorized_keys" || strings.HasPrefix(n, "known_hosts") {
			continue
		}
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p + ".pub"); err == nil {
			keys = append(keys, p)
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 && strings.Contains(string(b), "PRIVATE KEY-----") {
			keys = append(keys, p)
		}
	}
	slices.Sort(keys)
	return keys
}

// publicKeys are the operator's public keys in dir, for new VMs.
func publicKeys(dir string) []string {
	var out []string
	for _, n := range []string{"id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"} {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

func (m *Model) openAddMachine() tea.Cmd {
	var name, address, userName, port, identity string
	port = "22"
	if u, err := user.Current(); err == nil {
		userName = u.Username
	}
	keyOpts := []huh.Option[string]{huh.NewOption("ssh-agent and ~/.ssh/config", "")}
	for _, k := range sshKeys(sshDir(m.opts)) {
		keyOpts = append(keyOpts, huh.NewOption(k, k))
	}
	submit := func() tea.Cmd {
		p, _ := strconv.Atoi(port)
		nm := cloud.NewMachine{Name: name, Address: strings.TrimSpace(address), Port: p, User: strings.TrimSpace(userName), Identity: identity}
		cl, ask := m.cl, m.ask
		return m.startTask("add machine "+name, taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
			trust := cloud.Trust{Ask: func(ctx context.Context, host, fingerprint string) (bool, error) {
				return ask(ctx, "Trust the machine at "+host+"?",
					"Its host key fingerprint is\n  "+fingerprint+
						"\nOn the machine, `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` shows it.")
			}}
			mach, out, err := cl.AddMachine(ctx, nm, trust, steps)
			if err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("machine %s added (mesh address %s)%s", mach.Name, mach.MeshIP, out.Note()), nil, nil
		})
	}
	return m.openForm("Add a machine", submit, nil,
		huh.NewGroup(
			huh.NewInput().Title("Name").Description("how butter calls it").Value(&name).Validate(validName),
			huh.NewInput().Title("Address").Description("host name, IP or ~/.ssh/config alias").Value(&address).
				Validate(func(s string) error {
					if strings.TrimSpace(s) == "" {
						return errors.New("give the machine's address")
					}
					return nil
				}),
			huh.NewInput().Title("User").Value(&userName),
			huh.NewInput().Title("SSH port").Value(&port).Validate(func(s string) error {
				if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 65535 {
					return errors.New("a port, 1 to 65535")
				}
				return nil
			}),
		),
		huh.NewGroup(
			huh.NewSelect[string]().Title("SSH key").Options(keyOpts...).Value(&identity).Height(min(8, len(keyOpts)+2)),
			huh.NewNote().Title("Next").Description("butter connects, shows the host key's fingerprint for you to confirm, "+
				"asks before installing missing packages, then installs and starts the helper."),
		),
	)
}

func (m *Model) openCreateNetwork() tea.Cmd {
	inv := m.data.inv
	if inv == nil || len(inv.Machines) == 0 {
		m.setStatus("new network: add a machine first (1, then a)", true)
		return nil
	}
	var name, subnet, tunnel string
	var egress bool
	if p, err := inv.SuggestSubnet(); err == nil {
		subnet = p.String()
	}
	var chosen []string
	var opts []huh.Option[string]
	for _, mc := range inv.Machines {
		_, word := m.data.status(mc.Name)
		opts = append(opts, huh.NewOption(fmt.Sprintf("%s (%s)", mc.Name, word), mc.Name).Selected(true))
	}
	submit := func() tea.Cmd {
		nn := cloud.NewNetwork{Name: name, Machines: chosen, Tunnel: tunnel, Egress: egress}
		nn.Subnet, _ = netip.ParsePrefix(strings.TrimSpace(subnet))
		cl := m.cl
		return m.startTask("create network "+name, taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
			n, out, err := cl.CreateNetwork(ctx, nn, steps)
			if err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("network %s (%s) is on %s%s", n.Name, n.Subnet, strings.Join(n.Machines, ", "), out.Note()), nil, nil
		})
	}
	return m.openForm("Create a network", submit, nil,
		huh.NewGroup(
			huh.NewInput().Title("Name").Value(&name).Validate(newName("a network", func(s string) bool {
				_, ok := inv.Network(s)
				return ok
			})),
			huh.NewInput().Title("Subnet").Description("proposed: a free /24").Value(&subnet).Validate(func(s string) error {
				p, err := netip.ParsePrefix(strings.TrimSpace(s))
				if err != nil || !p.Addr().Is4() || p.Bits() > 29 {
					return errors.New("an IPv4 range such as 10.20.0.0/24")
				}
				return nil
			}),
			huh.NewSelect[string]().Title("Tunnel").Inline(true).Options(
				huh.NewOption("auto", ""), huh.NewOption("gretap", "gretap"), huh.NewOption("vxlan", "vxlan")).Value(&tunnel),
			huh.NewConfirm().Title("Egress").Description("VMs reach the internet through their machine").Inline(true).Value(&egress),
		),
		huh.NewGroup(
			huh.NewMultiSelect[string]().Title("Machines").Description("↑/↓ move · space toggles · enter creates").
				Options(opts...).Value(&chosen).Height(min(12, len(opts)+3)).
				Validate(func(s []string) error {
					if len(s) == 0 {
						return errors.New("choose at least one machine")
					}
					return nil
				}),
		),
	)
}

// vmSizes are the sizes the form offers.
var vmSizes = []struct {
	label           string
	cpus, mem, disk int
}{
	{fmt.Sprintf("tiny: %d vCPU, %d MiB, the image's disk", helperapi.DefaultCPUs, helperapi.DefaultMemoryMiB),
		helperapi.DefaultCPUs, helperapi.DefaultMemoryMiB, 0},
	{"small: 1 vCPU, 1 GiB, 10 GiB disk", 1, 1024, 10},
	{"medium: 2 vCPU, 2 GiB, 20 GiB disk", 2, 2048, 20},
	{"large: 4 vCPU, 8 GiB, 40 GiB disk", 4, 8192, 40},
}

func (m *Model) openCreateVM() tea.Cmd {
	inv := m.data.inv
	if inv == nil || len(inv.Networks) == 0 {
		m.setStatus("new VM: create a network first (2, then a)", true)
		return nil
	}
	var name, network, machine, image, url, file string
	size := 1
	var netOpts []huh.Option[string]
	for _, n := range inv.Networks {
		netOpts = append(netOpts, huh.NewOption(fmt.Sprintf("%s (%s)", n.Name, n.Subnet), n.Name))
	}
	network = inv.Networks[0].Name
	var imgOpts []huh.Option[string]
	for _, c := range helperapi.CatalogNames() {
		imgOpts = append(imgOpts, huh.NewOption(c, c))
	}
	if m.opts.Images != nil {
		for _, im := range m.opts.Images(m.opts.Inventory) {
			imgOpts = append(imgOpts, huh.NewOption(im.Label, im.Source))
		}
	}
	imgOpts = append(imgOpts, huh.NewOption("an https URL…", "url"), huh.NewOption("a file on this computer…", "file"))
	var sizeOpts []huh.Option[int]
	for i, s := range vmSizes {
		sizeOpts = append(sizeOpts, huh.NewOption(s.label, i))
	}
	submit := func() tea.Cmd {
		src := image
		switch image {
		case "url":
			src = strings.TrimSpace(url)
		case "file":
			src = strings.TrimSpace(file)
		}
		s := vmSizes[size]
		nv := cloud.NewVM{Name: name, Machine: machine, Network: network, Image: src,
			CPUs: s.cpus, MemoryMiB: s.mem, DiskGiB: s.disk, SSHKeys: publicKeys(sshDir(m.opts))}
		cl := m.cl
		return m.startTask("create VM "+name, taskShown, func(ctx context.Context, steps func(cloud.Step), progress func(helperapi.Progress)) (string, tea.Msg, error) {
			v, err := cl.CreateVM(ctx, nv, progress, steps)
			if err != nil {
				return "", nil, err
			}
			return fmt.Sprintf("vm %s is %s on %s at %s", v.Name, v.State, v.Machine, v.IP), nil, nil
		})
	}
	machineOpts := func() []huh.Option[string] {
		var out []huh.Option[string]
		if n, ok := inv.Network(network); ok {
			for _, mc := range n.Machines {
				_, word := m.data.status(mc)
				out = append(out, huh.NewOption(fmt.Sprintf("%s (%s)", mc, word), mc))
			}
		}
		return out
	}
	return m.openForm("Create a VM", submit, nil,
		huh.NewGroup(
			huh.NewInput().Title("Name").Value(&name).Validate(newName("a VM", func(s string) bool {
				_, ok := inv.VM(s)
				return ok
			})),
			huh.NewSelect[string]().Title("Network").Options(netOpts...).Value(&network).Height(min(6, len(netOpts)+2)),
			huh.NewSelect[string]().Title("Machine").OptionsFunc(machineOpts, &network).Value(&machine).Height(6),
		),
		huh.NewGroup(
			huh.NewSelect[string]().Title("Image").Options(imgOpts...).Value(&image).Height(min(7, len(imgOpts)+2)),
			huh.NewSelect[int]().Title("Size").Options(sizeOpts...).Value(&size).Height(6),
		),
		huh.NewGroup(
			huh.NewInput().Title("Image URL").Description("https://…,checksum=sha256:… (or ,insecure-no-checksum)").Value(&url).
				Validate(func(s string) error {
					if _, err := helperapi.ParseSource(strings.TrimSpace(s)); err != nil {
						return err
					}
					return nil
				}),
		).WithHideFunc(func() bool { return image != "url" }),
		huh.NewGroup(
			huh.NewInput().Title("Image file").Description("a disk image, or kernel=PATH,initrd=PATH").Value(&file).
				Validate(func(s string) error {
					_, err := helperapi.ParseSource(strings.TrimSpace(s))
					return err
				}),
		).WithHideFunc(func() bool { return image != "file" }),
	)
}

func (m *Model) confirmRemoveVM(name string) tea.Cmd {
	cl := m.cl
	return m.withPlan("butter vm remove "+name, func(ctx context.Context) (cloud.DryRun, error) {
		return cl.DryRunVMAction(ctx, name, "remove")
	}, func(plan string) tea.Cmd {
		yes := false
		return m.openForm("Remove VM "+name, func() tea.Cmd {
			if !yes {
				return nil
			}
			return m.vmAction(name, "remove")
		}, nil, huh.NewGroup(huh.NewConfirm().
			Title("Remove VM "+name+"?").
			Description("Its disk is deleted. This cannot be undone.\n\n"+plan).
			Affirmative("Remove").Negative("Keep").Value(&yes)))
	})
}

func (m *Model) confirmRemoveNetwork(name string) tea.Cmd {
	cl := m.cl
	return m.withPlan("butter network remove "+name, func(ctx context.Context) (cloud.DryRun, error) {
		return cl.DryRunRemoveNetwork(ctx, name)
	}, func(plan string) tea.Cmd {
		yes := false
		return m.openForm("Remove network "+name, func() tea.Cmd {
			if !yes {
				return nil
			}
			return m.startTask("remove network "+name, taskShown, func(ctx context.Context, steps func(cloud.Step), _ func(helperapi.Progress)) (string, tea.Msg, error) {
				out, err := cl.RemoveNetwork(ctx, name, steps)
				if err != nil {
					return "", nil, err
				}
				return "network " + name + " removed" + out.Note(), nil, nil
			})
		}, nil, huh.NewGroup(huh.NewConfirm().
			Title("Remove network "+name+"?").
			Description("Its bridges and tunnels are taken off every machine.\n\n"+plan).
			Affirmative("Remove").Negative("Keep").Value(&yes)))
	})
}

// newName checks a name typed for a new network or VM: the one name rule,
// and not one that what (e.g. "a VM") already has.
func newName(what string, taken func(string) bool) func(string) error {
	return func(s string) error {
		if err := validName(s); err != nil {
			return err
		}
		if taken(s) {
			return errors.New(what + " has this name")
		}
		return nil
	}
}
