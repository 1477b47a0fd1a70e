package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/remote"
)

// CloudName is the lab `butter lab up` makes by default.
const CloudName = "butter"

// DefaultUnderlay is the underlay prefix of a lab cloud unless told.
var DefaultUnderlay = sim.DefaultUnderlay

// CloudOptions describe a lab cloud.
type CloudOptions struct {
	// Name names the lab (default CloudName); Underlay is its underlay
	// prefix (default DefaultUnderlay). Labs that are up at once need
	// different names and underlays.
	Name     string
	Underlay netip.Prefix
	// NoAdd leaves the machines out of the inventory, to be added with
	// `butter machine add`.
	NoAdd bool
	// Machines on the underlay (default 3) and behind one NAT router.
	Machines, NAT int
	// Dir is the operator's folder for the lab: its inventory, SSH key and
	// known_hosts (default DefaultCloudDir()).
	Dir string
	// Butter is the butter binary the machines run as their helper
	// (default: this executable).
	Butter string
	// Accel is the machines' VM accelerator (default tcg: KVM is not
	// assumed to work).
	Accel string
	// Demo creates a network across the machines and a tiny VM on it.
	Demo bool
	// NoLibvirt starts no libvirtd on the machines: networks only (the
	// scale benchmark's many machines).
	NoLibvirt bool
}

// CloudLab is a lab cloud that is up.
type CloudLab struct {
	Name       string `json:"name"`
	Dir        string `json:"dir"`
	Inventory  string `json:"inventory"`
	KnownHosts string `json:"known_hosts"`
	Key        string `json:"key"`
	// TinyImage is the image source of the tiny guest, for `vm create
	// --image`.
	TinyImage string `json:"tiny_image"`
}

// CloudDir is the operator's folder of lab name: ~/.config/butter/lab,
// or lab-<name> for a lab not named CloudName.
func CloudDir(name string) string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	if name == "" || name == CloudName {
		return filepath.Join(dir, "butter", "lab")
	}
	return filepath.Join(dir, "butter", "lab-"+name)
}

// Connector is how the lab's operator reaches its machines.
func (c CloudLab) Connector(butter string) cloud.Connector {
	return cloud.SSH{KnownHosts: c.KnownHosts, IdentityFiles: []string{c.Key}, SSHConfig: "none",
		AgentSocket: "none", Helpers: remote.HelperOptions{Binaries: map[string]string{runtime.GOARCH: butter}}}
}

// FindCloud returns lab cloud name if it is up.
func FindCloud(name string) (CloudLab, bool) {
	if name == "" {
		name = CloudName
	}
	b, err := os.ReadFile(filepath.Join(CloudDir(name), "lab.json"))
	if err != nil {
		return CloudLab{}, false
	}
	var c CloudLab
	if json.Unmarshal(b, &c) != nil {
		return CloudLab{}, false
	}
	if _, err := os.Stat(filepath.Join(sim.StateRoot, c.Name)); err != nil {
		return CloudLab{}, false
	}
	return c, true
}

// StartCloud builds a whole cloud on this Linux box: simulated machines
// (K of them behind a NAT router), each with its own sshd and libvirtd,
// reachable from the host through the lab's host link; then it adds them
// to the lab's own inventory through the same core as `butter machine
// add`, over real SSH, and builds the tiny guest image so that VMs boot
// without internet. It needs root.
func StartCloud(ctx context.Context, o CloudOptions, steps func(cloud.Step)) (_ CloudLab, err error) {
	if o.Machines == 0 {
		o.Machines = 3
	}
	if o.Name == "" {
		o.Name = CloudName
	}
	if err := sim.CheckName(o.Name); err != nil {
		return CloudLab{}, err
	}
	o.Dir = CloudDir(o.Name)
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if o.Butter == "" {
		if o.Butter, err = os.Executable(); err != nil {
			return CloudLab{}, err
		}
	}
	say := func(machine, text string) {
		if steps != nil {
			steps(cloud.Step{Machine: machine, Text: text})
		}
	}
	if runtime.GOOS != "linux" {
		return CloudLab{}, errors.New("butter lab simulates machines with Linux network namespaces: run it on Linux")
	}
	if os.Geteuid() != 0 {
		return CloudLab{}, errors.New("butter lab makes network namespaces and runs daemons: run it as root (sudo)")
	}
	if _, ok := FindCloud(o.Name); ok {
		return CloudLab{}, fmt.Errorf("lab %q is up already (%s); `butter lab down` first", o.Name, o.Dir)
	}
	_ = sim.Clean(ctx, o.Name) // leftovers of a crashed lab
	if err := os.RemoveAll(o.Dir); err != nil {
		return CloudLab{}, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return CloudLab{}, err
	}
	c := CloudLab{Name: o.Name, Dir: o.Dir, Inventory: filepath.Join(o.Dir, "inventory.yaml"),
		KnownHosts: filepath.Join(o.Dir, "known_hosts"), Key: filepath.Join(o.Dir, "id_ed25519")}

	say("", fmt.Sprintf("building %d machines (%d behind NAT)", o.Machines+o.NAT, o.NAT))
	l, err := sim.Up(ctx, sim.Config{Name: o.Name, Machines: o.Machines, NAT: o.NAT, Underlay: o.Underlay})
	if err != nil {
		return CloudLab{}, err
	}
	defer func() {
		if err != nil {
			_ = l.Down(context.WithoutCancel(ctx))
			os.RemoveAll(o.Dir)
		}
	}()
	host, err := l.AddHostLink(ctx)
	if err != nil {
		return CloudLab{}, err
	}
	pub, err := writeKey(c.Key)
	if err != nil {
		return CloudLab{}, err
	}

	type reach struct {
		addr string
		port int
		key  ssh.PublicKey
	}
	reaches := make([]reach, len(l.Machines))
	var wg sync.WaitGroup
	errs := make([]error, len(l.Machines))
	for i, m := range l.Machines {
		wg.Go(func() {
			key, port, err := m.StartSSHD(ctx, pub)
			if err != nil {
				errs[i] = err
				return
			}
			r := reach{addr: m.Addr.Addr().String(), port: port, key: key}
			if m.Router != nil {
				r.addr, r.port = m.Router.Addr.Addr().String(), 2200+m.Index
				if err := m.Router.ForwardPort(ctx, r.port, m.Addr.Addr(), port); err != nil {
					errs[i] = err
					return
				}
			}
			reaches[i] = r
			if o.NoLibvirt {
				return
			}
			if _, err := m.StartLibvirt(ctx, nil); err != nil {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return CloudLab{}, err
	}
	var hosts strings.Builder
	for _, r := range reaches {
		hosts.WriteString(knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(r.addr, strconv.Itoa(r.port)))}, r.key) + "\n")
	}
	if err := os.WriteFile(c.KnownHosts, []byte(hosts.String()), 0o600); err != nil {
		return CloudLab{}, err
	}
	say("", "machines up; host link "+host.Addr.String())

	kernel, initrd, err := sim.TinyGuest(ctx, sim.DefaultCacheDir)
	if err != nil {
		return CloudLab{}, err
	}
	c.TinyImage = "kernel=" + kernel + ",initrd=" + initrd
	b, _ := json.MarshalIndent(c, "", "  ")
	if err := os.WriteFile(filepath.Join(o.Dir, "lab.json"), b, 0o600); err != nil {
		return CloudLab{}, err
	}

	if o.NoAdd {
		return c, nil
	}
	cl := cloud.New(c.Inventory, c.Connector(o.Butter), nil)
	defer cl.Close()
	for i, m := range l.Machines {
		nm := cloud.NewMachine{Name: m.Name, Address: reaches[i].addr, Port: reaches[i].port, User: "root",
			Identity: c.Key, Accel: o.Accel}
		if _, _, err := cl.AddMachine(ctx, nm, cloud.Trust{}, steps); err != nil {
			return CloudLab{}, err
		}
	}
	if o.Demo {
		n, _, err := cl.CreateNetwork(ctx, cloud.NewNetwork{Name: "lab"}, steps)
		if err != nil {
			return CloudLab{}, err
		}
		say("", "network lab: "+n.Subnet.String())
		if _, err := cl.CreateVM(ctx, cloud.NewVM{Name: "hello", Machine: l.Machines[0].Name, Network: "lab",
			Image: c.TinyImage, CPUs: 1, MemoryMiB: 128}, nil, steps); err != nil {
			return CloudLab{}, err
		}
	}
	return c, nil
}

// StopCloud removes every trace of lab cloud name: its namespaces and
// processes (guests included), its host link, and its folder.
func StopCloud(ctx context.Context, name string) error {
	if name == "" {
		name = CloudName
	}
	if err := sim.CheckName(name); err != nil {
		return err
	}
	err := sim.Clean(ctx, name)
	// The kernel tears a network namespace down in the background: wait
	// for the host link to go with it, so that a new lab can take its
	// name at once.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, lerr := net.InterfaceByName(sim.HostLinkName(name)); lerr != nil {
			break
		}
	}
	return errors.Join(err, os.RemoveAll(CloudDir(name)))
}

// writeKey makes the lab operator's SSH key and returns its
// authorized_keys line.
func writeKey(path string) ([]byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "butter lab")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	line := ssh.MarshalAuthorizedKey(sp)
	return line, os.WriteFile(path+".pub", line, 0o644)
}
