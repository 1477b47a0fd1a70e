package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// Defaults for Options.
const (
	DefaultSocket    = "/run/libvirt/libvirt-sock"
	DefaultImagesDir = "/var/lib/libvirt/butter/images"
	DefaultVMsDir    = "/var/lib/libvirt/butter/vms"
	DefaultLogDir    = "/var/log/libvirt/butter"
)

// Storage pools the helper owns: cached base images, and each VM's disk
// and seed.
const (
	ImagesPool = "butter-images"
	VMsPool    = "butter-vms"
)

// Options configure a Manager.
type Options struct {
	Socket    string // libvirtd's socket
	ImagesDir string // the images pool's folder
	VMsDir    string // the VMs pool's folder: overlays and seeds
	LogDir    string // serial console logs
	// Accel chooses KVM or TCG. A machine whose /dev/kvm exists but
	// hangs guests needs AccelTCG: the helper cannot tell by looking.
	Accel string
	// MaxImageSize bounds one image file the helper downloads or takes
	// (images.Store.MaxImageSize); images.DefaultMaxImageSize if zero.
	MaxImageSize int64
	// Probe is the background KVM probe (StartKVMProbe), if one runs: a
	// manager opened meanwhile waits for its verdict rather than proving
	// KVM with the first guest.
	Probe *KVMProbe
}

func (o Options) withDefaults() Options {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.ImagesDir == "" {
		o.ImagesDir = DefaultImagesDir
	}
	if o.VMsDir == "" {
		o.VMsDir = DefaultVMsDir
	}
	if o.LogDir == "" {
		o.LogDir = DefaultLogDir
	}
	if o.Accel == "" {
		o.Accel = helperapi.AccelAuto
	}
	return o
}

// Manager creates and runs VMs through one libvirtd.
type Manager struct {
	o       Options
	l       *libvirt.Libvirt
	domType string // kvm or qemu
	arch    string
	machine string

	mu sync.Mutex // one create or remove at a time: names and addresses stay unique
}

// Open connects to libvirtd and makes sure the helper's storage pools
// exist and run.
func Open(ctx context.Context, o Options) (*Manager, error) {
	m, err := unconnected(ctx, o)
	if err != nil {
		return nil, err
	}
	o = m.o
	l, err := dial(o.Socket)
	if err != nil {
		return nil, err
	}
	m.l = l
	for _, d := range []string{o.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			l.Disconnect()
			return nil, fmt.Errorf("make %s: %w", d, err)
		}
	}
	if err := m.ensurePool(ImagesPool, o.ImagesDir); err != nil {
		l.Disconnect()
		return nil, err
	}
	if err := m.ensurePool(VMsPool, o.VMsDir); err != nil {
		l.Disconnect()
		return nil, err
	}
	return m, nil
}

// unconnected is a Manager without its libvirtd: what this machine's
// domains are (type, arch, machine), for Open and for a dry run.
func unconnected(ctx context.Context, o Options) (*Manager, error) {
	o = o.withDefaults()
	m := &Manager{o: o}
	o.Probe.Wait(ctx)
	var err error
	if m.domType, err = domainType(o.Accel, m.kvmVerdict(), KVMAnswers); err != nil {
		return nil, err
	}
	switch runtime.GOARCH {
	case "amd64":
		m.arch, m.machine = "x86_64", "pc"
	case "arm64":
		m.arch, m.machine = "aarch64", "virt"
	default:
		return nil, fmt.Errorf("VMs on %s machines are not supported yet", runtime.GOARCH)
	}
	return m, nil
}

func dial(sock string) (*libvirt.Libvirt, error) {
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(5*time.Second)))
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("connect to libvirtd at %s (is libvirt-daemon-system installed and running?): %w", sock, err)
	}
	return l, nil
}

// Close disconnects from libvirtd.
func (m *Manager) Close() error { return m.l.Disconnect() }

// DomainType is kvm or qemu (TCG), as chosen at Open.
func (m *Manager) DomainType() string { return m.domType }

// ensurePool defines, builds, starts and autostarts a dir pool.
func (m *Manager) ensurePool(name, dir string) error {
	pool, err := m.l.StoragePoolLookupByName(name)
	if err != nil {
		if !isCode(err, libvirt.ErrNoStoragePool) {
			return fmt.Errorf("look up storage pool %q: %w", name, err)
		}
		xml := fmt.Sprintf("<pool type='dir'><name>%s</name><target><path>%s</path>"+
			"<permissions><mode>0711</mode></permissions></target></pool>", name, dir)
		if pool, err = m.l.StoragePoolDefineXML(xml, 0); err != nil {
			return fmt.Errorf("define storage pool %q at %s: %w", name, dir, err)
		}
	}
	state, _, _, _, err := m.l.StoragePoolGetInfo(pool)
	if err != nil {
		return fmt.Errorf("read storage pool %q: %w", name, err)
	}
	if libvirt.StoragePoolState(state) != libvirt.StoragePoolRunning {
		if err := m.l.StoragePoolBuild(pool, libvirt.StoragePoolBuildNew); err != nil {
			return fmt.Errorf("build storage pool %q at %s: %w", name, dir, err)
		}
		if err := m.l.StoragePoolCreate(pool, 0); err != nil {
			return fmt.Errorf("start storage pool %q: %w", name, err)
		}
	}
	if err := m.l.StoragePoolSetAutostart(pool, 1); err != nil {
		return fmt.Errorf("autostart storage pool %q: %w", name, err)
	}
	return nil
}

func isCode(err error, code libvirt.ErrorNumber) bool {
	var e libvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

// availableMiB reads MemAvailable from /proc/meminfo.
func availableMiB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.Atoi(fields[1])
			return kb / 1024, err
		}
	}
	return 0, errors.New("no MemAvailable in /proc/meminfo")
}

func (m *Manager) diskPath(name string) string { return filepath.Join(m.o.VMsDir, name+".qcow2") }
func (m *Manager) seedPath(name string) string { return seedFile(m.o.VMsDir, name) }

// seedFile is VM name's cloud-init seed in the VMs folder dir.
func seedFile(dir, name string) string        { return filepath.Join(dir, name+"-seed.iso") }
func (m *Manager) logPath(name string) string { return filepath.Join(m.o.LogDir, name+".console.log") }

// Connected tells whether the connection to libvirtd is still up.
func (m *Manager) Connected() bool { return m.l.IsConnected() }
