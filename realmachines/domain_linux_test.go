package realmachines

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/butter-cloud/butter/cloud"
)

// A real libvirt domain on a machine, made with `butter vm create` and
// marked to autostart, whose state the tier checks across a reboot. Not a
// Linux guest: one booting nested in these TCG machines starves them (see
// the README), so the domain boots a 60-byte multiboot kernel that prints
// idleReady on its serial console and halts its CPU with interrupts off,
// which costs qemu next to nothing.

const (
	idleVM    = "idle"
	idleReady = "butter idle guest: halted"
)

// idleKernel is a multiboot (a.out kludge) image that qemu loads with
// -kernel: it writes idleReady and a newline to COM1 and halts.
func idleKernel() []byte {
	const load, header = 0x100000, 32
	msg := append([]byte(idleReady+"\n"), 0)
	entry := uint32(load + header)
	code := []byte{0xba, 0xf8, 0x03, 0, 0, 0xbe} // mov edx, 0x3f8; mov esi, msg
	code = binary.LittleEndian.AppendUint32(code, entry+22)
	code = append(code,
		0xac,       // lodsb
		0x84, 0xc0, // test al, al
		0x74, 0x03, // jz halt
		0xee,       // out dx, al
		0xeb, 0xf8, // jmp lodsb
		0xfa,       // halt: cli
		0xf4,       // hlt
		0xeb, 0xfd, // jmp hlt
	)
	code = append(code, msg...)
	end := uint32(load + header + len(code))
	const magic, flags = 0x1badb002, 0x00010000 // flags: the address fields below are valid
	sum := uint32(magic + flags)
	h := []uint32{magic, flags, -sum, load, load, end, end, entry}
	var out []byte
	for _, v := range h {
		out = binary.LittleEndian.AppendUint32(out, v)
	}
	return append(out, code...)
}

// createIdleVM makes the idle domain on m on network nw, through butter.
func (r *rig) createIdleVM(m *machine, nw network) {
	r.t.Helper()
	kernel, initrd := filepath.Join(r.dir, "idle.kernel"), filepath.Join(r.dir, "idle.initrd")
	if err := os.WriteFile(kernel, idleKernel(), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(initrd, make([]byte, 512), 0o644); err != nil {
		r.t.Fatal(err)
	}
	// The idle guest has no OS to answer the ACPI power button, so at
	// reboot Debian's libvirt-guests would wait its whole shutdown
	// timeout for it (minutes) before the machine goes down: a cost of
	// this guest, not of the machine, so the wait is cut to 5 s here.
	r.mustSh(m, `touch /etc/default/libvirt-guests && sed -i '/^ON_SHUTDOWN=/d; /^SHUTDOWN_TIMEOUT=/d' /etc/default/libvirt-guests && printf 'ON_SHUTDOWN=shutdown\nSHUTDOWN_TIMEOUT=5\n' >> /etc/default/libvirt-guests`)
	start := time.Now()
	r.must("vm", "create", idleVM, "--machine", m.name, "--network", nw.Name,
		"--image", "kernel="+kernel+",initrd="+initrd, "--memory", "64M")
	r.t.Logf("vm %s created on %s in %s", idleVM, m.name, time.Since(start).Round(100*time.Millisecond))
	r.checkIdleVM(m, 1, time.Minute)
}

// checkIdleVM waits until butter lists the idle VM running and marked to
// autostart, and its console log has shown idleReady boots times (the
// log is appended to across starts).
func (r *rig) checkIdleVM(m *machine, boots int, within time.Duration) {
	r.t.Helper()
	var info cloud.VMStatus
	var listErr error
	var shown int
	deadline := time.Now().Add(within)
	for logged := false; ; {
		// A list no machine answered (TCG machines busy starting the
		// guest miss the list's deadline) is asked again, to the end.
		info, listErr = r.listVM(idleVM)
		out, _ := r.sh(m, fmt.Sprintf("grep -c %q /var/log/libvirt/butter/%s.console.log; true", idleReady, idleVM))
		shown, _ = strconv.Atoi(strings.TrimSpace(out))
		if listErr == nil && info.State == "running" && info.Autostart && shown >= boots || time.Now().After(deadline) {
			break
		}
		if (listErr != nil || info.State == "") && !logged {
			r.logWhyAway("vm list") // once: it lists every machine and asks the away ones
			logged = true
		}
		time.Sleep(time.Second)
	}
	if listErr != nil {
		r.t.Errorf("vm %s on %s: the last list within %s failed: %v", idleVM, m.name, within, listErr)
	} else if info.State != "running" || !info.Autostart || info.Network == "" {
		r.t.Errorf("vm %s on %s: %+v; want running, marked to autostart, on a network", idleVM, m.name, info)
	}
	if shown != boots {
		r.t.Errorf("vm %s's console on %s shows %q %d times, want %d (one per start)", idleVM, m.name, idleReady, shown, boots)
	}
	out, err := r.sh(m, "virsh -c qemu:///system domstate "+idleVM+"; virsh -c qemu:///system dominfo "+idleVM+" | grep -i autostart")
	if err != nil || !strings.Contains(out, "running") || !strings.Contains(out, "enable") {
		r.t.Errorf("virsh on %s says of %s: %q (%v); want running, autostart enabled", m.name, idleVM, out, err)
	}
}

// listVM is one VM as `butter vm list --json` shows it (zero: absent).
func (r *rig) listVM(name string) (cloud.VMStatus, error) {
	out, err := r.run("vm", "list", "--json", "--timeout", listWait)
	if err != nil {
		return cloud.VMStatus{}, err
	}
	var rows []cloud.VMStatus
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return cloud.VMStatus{}, fmt.Errorf("vm list --json: %w: %s", err, out)
	}
	for _, v := range rows {
		if v.Name == name {
			return v, nil
		}
	}
	return cloud.VMStatus{}, nil
}
