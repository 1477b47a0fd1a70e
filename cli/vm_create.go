package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/printable"
)

// vmCreateFlags are `vm create`'s flags that need reading.
type vmCreateFlags struct {
	memory, disk, ip string
	sshKeys          []string // files
	// insecureNoChecksum takes an https image URL without a checksum.
	insecureNoChecksum bool
}

func (s *session) vmCreateCommand() *cobra.Command {
	var (
		nv  cloud.NewVM
		vf  vmCreateFlags
		dry bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a VM on a machine and start it",
		Args:  oneName("VM"),
		RunE: func(cmd *cobra.Command, args []string) error {
			nv.Name = args[0]
			if err := vf.read(&nv); err != nil {
				return err
			}
			if dry {
				return s.withCloud(func(cl *cloud.Cloud) error {
					d, err := cl.DryRunCreateVM(cmd.Context(), nv)
					if err != nil {
						return err
					}
					return s.printDryRun("vm create "+nv.Name, d)
				})
			}
			return s.vmCreate(cmd.Context(), nv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&nv.Machine, "machine", "", "the machine to run on")
	f.StringVar(&nv.Network, "network", "", "the private network")
	f.StringVar(&nv.Image, "image", "", "debian-12, ubuntu-24.04, an https URL, a file, or kernel=PATH,initrd=PATH[,cmdline=ARGS]")
	f.BoolVar(&vf.insecureNoChecksum, "insecure-no-checksum", false, "take an https --image URL without a checksum on the server's TLS alone")
	f.IntVar(&nv.CPUs, "cpus", helperapi.DefaultCPUs, "virtual CPUs")
	f.StringVar(&vf.memory, "memory", fmt.Sprintf("%dM", helperapi.DefaultMemoryMiB), "memory, e.g. 512M or 2G ("+sizeHelp+")")
	f.StringVar(&vf.disk, "disk", "", "disk size, e.g. 20G ("+sizeHelp+"; default: the image's own)")
	f.StringVar(&vf.ip, "ip", "", "the VM's address (default: the next free one)")
	f.StringArrayVar(&vf.sshKeys, "ssh-key", nil, "an SSH public key `FILE` to authorize (repeatable; default ~/.ssh/id_*.pub)")
	dryRunFlag(cmd, &dry)
	require(cmd, "machine", "network", "image")
	return cmd
}

// read puts the flags into nv.
func (vf vmCreateFlags) read(nv *cloud.NewVM) error {
	var err error
	if vf.insecureNoChecksum {
		if !strings.Contains(nv.Image, "://") || strings.Contains(nv.Image, ",checksum=") {
			return usageErrorf("--insecure-no-checksum goes only with an https --image URL that has no checksum")
		}
		if !strings.HasSuffix(nv.Image, helperapi.InsecureNoChecksumSuffix) {
			nv.Image += helperapi.InsecureNoChecksumSuffix
		}
	}
	if nv.MemoryMiB, err = parseSize(vf.memory, "M"); err != nil {
		return usageErrorf("--memory: %w", err)
	}
	if vf.disk != "" {
		mib, err := parseSize(vf.disk, "G")
		if err != nil {
			return usageErrorf("--disk: %w", err)
		}
		nv.DiskGiB = (mib + 1023) / 1024
	}
	if vf.ip != "" {
		if nv.Address, err = netip.ParseAddr(vf.ip); err != nil {
			return usageErrorf("--ip %q: want an address such as 10.20.0.5", vf.ip)
		}
	}
	for _, file := range vf.sshKeys {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--ssh-key: %w", err)
		}
		nv.SSHKeys = append(nv.SSHKeys, strings.TrimSpace(string(b)))
	}
	if len(nv.SSHKeys) == 0 {
		nv.SSHKeys = defaultSSHKeys()
	}
	return nil
}

func (s *session) vmCreate(ctx context.Context, nv cloud.NewVM) error {
	cl, err := s.open()
	if err != nil {
		return err
	}
	defer cl.Close()
	last := time.Time{}
	v, err := cl.CreateVM(ctx, nv, func(p helperapi.Progress) {
		if time.Since(last) > time.Second || p.Done == p.Total {
			last = time.Now()
			fmt.Fprintln(s.stderr, printable.String(fmt.Sprintf("%s %s: %s", p.Phase, p.Name, progressText(p))))
		}
	}, s.steps)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "vm %s created on %s: %s, %s\n", v.Name, v.Machine, v.IP, printable.String(v.State))
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
		if b, err := os.ReadFile(filepath.Join(home, ".ssh", n)); err == nil {
			keys = append(keys, strings.TrimSpace(string(b)))
		}
	}
	return keys
}
