package realmachines

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/assets"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// machines is how many real machines the tier boots.
const machines = 3

func needTier(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots three Debian systems under qemu TCG (minutes); not in -short")
	}
	testbed.NeedRoot(t) // debootstrap, taps, a bridge, caches under /var/cache/butter
	testbed.NeedPrograms(t, "qemu-system-x86_64", "qemu-img", "ip", "mkfs.ext4", "go")
	testbed.NeedCloudImageTools(t, true)
}

func TestRealMachines(t *testing.T) {
	needTier(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	r := newRig(t, ctx, machines)

	// Boot all three at once, then wait for each one's sshd.
	start := time.Now()
	for _, m := range r.machines {
		r.boot(m)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(r.machines))
	for i, m := range r.machines {
		wg.Go(func() {
			_, errs[i] = r.ssh(m, bootWithin)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d machines booted and answer SSH %s after qemu started", len(r.machines), time.Since(start).Round(100*time.Millisecond))

	for _, m := range r.machines {
		addStart := time.Now()
		out := r.add(m)
		t.Logf("%s added in %s: %s", m.name, time.Since(addStart).Round(100*time.Millisecond), strings.TrimSpace(out))
	}
	checkHardening(t, r, r.machines[0])
	for _, m := range r.machines {
		checkUnit(t, r, m)
		f := facts(t, r, m)
		if !f.KernelWireGuard || !f.Gretap {
			t.Errorf("%s: facts say kernel WireGuard %v, gretap %v; Debian's kernel has both", m.name, f.KernelWireGuard, f.Gretap)
		}
		if f.Uplink != "eth0" || !strings.Contains(strings.Join(f.Addresses, " "), m.addr().String()) {
			t.Errorf("%s: facts say uplink %q with addresses %v; want eth0 with %s", m.name, f.Uplink, f.Addresses, m.addr())
		}
	}
	if t.Failed() {
		return
	}

	nw := r.createNetwork("net1", netip.MustParsePrefix("10.77.1.0/24"))
	for i, m := range r.machines {
		r.installProbe(m, nw.Bridge, probeAddr(nw.subnet, i))
	}
	r.reachAll(nw)
	// A libvirt domain, marked to autostart, on the machine that reboots.
	r.createIdleVM(r.machines[0], nw)
	if t.Failed() {
		return
	}
	faults(t, r, nw)
	// A measurement (bench/footprint.sh), not a check: its apply of 310
	// tunnel ports alone takes minutes on TCG.
	if os.Getenv(footprintEnv) == "1" {
		footprint(t, r)
	}
}

// checkUnit checks that the helper runs on m as the systemd unit butter
// installed.
func checkUnit(t *testing.T, r *rig, m *machine) {
	t.Helper()
	out, err := r.sh(m, "systemctl is-active "+assets.HelperUnitName+"; systemctl is-enabled "+assets.HelperUnitName)
	if got := strings.Fields(out); err != nil || len(got) != 2 || got[0] != "active" || got[1] != "enabled" {
		t.Errorf("%s: systemctl is-active, is-enabled %s: %q (%v); want active, enabled", m.name, assets.HelperUnitName, out, err)
	}
}

// helperCmd runs the installed helper on the machine (the unit's binary).
const helperCmd = `"$(systemctl show -P ExecStart ` + assets.HelperUnitName + ` | sed -n 's/.*path=\([^ ;]*\).*/\1/p')" helper `

// listJSON is `butter <what> list --json` decoded, a T per row.
func listJSON[T any](r *rig, what string) []T {
	r.t.Helper()
	var rows []T
	// A list is read only: one that no machine answered in time (TCG
	// machines slowed while one of them boots) is asked again, twice.
	out, err := r.run(what, "list", "--json", "--timeout", listWait)
	for try := 1; err != nil && try < 3; try++ {
		r.t.Logf("%s list, try %d: %v", what, try, err)
		if try == 1 {
			r.logWhyAway(what + " list")
		}
		time.Sleep(2 * time.Second)
		out, err = r.run(what, "list", "--json", "--timeout", listWait)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		r.t.Fatalf("%s list --json: %v: %s", what, err, out)
	}
	return rows
}

// facts is `butter helper facts` on m, through the unit's own binary.
func facts(t *testing.T, r *rig, m *machine) helperapi.Facts {
	t.Helper()
	out := r.mustSh(m, helperCmd+"facts")
	var f helperapi.Facts
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("%s: helper facts: %v: %s", m.name, err, out)
	}
	return f
}

// checkHardening checks, on m, that the running helper is confined as its
// unit says (and still does its job, which the rest of the tier shows):
// its capability bounding set, no new privileges, a read-only /usr and
// /etc in its mount namespace, and its private state folder.
func checkHardening(t *testing.T, r *rig, m *machine) {
	t.Helper()
	out := r.mustSh(m, `pid=$(systemctl show -P MainPID `+assets.HelperUnitName+`)
grep -E '^(CapBnd|NoNewPrivs):' /proc/$pid/status | tr -s '\t ' ' '
nsenter -t $pid -m sh -c 'touch /usr/lib/.butter-probe /etc/.butter-probe 2>&1; touch /var/lib/butter/.probe && rm /var/lib/butter/.probe && echo state writable'
stat -c 'state %a %U' /var/lib/butter`)
	// CAP_CHOWN 0, CAP_DAC_OVERRIDE 1, CAP_FOWNER 3, CAP_NET_BIND_SERVICE 10,
	// CAP_NET_ADMIN 12, CAP_NET_RAW 13.
	for _, want := range []string{"CapBnd: 000000000000340b", "NoNewPrivs: 1",
		"/usr/lib/.butter-probe': Read-only file system", "/etc/.butter-probe': Read-only file system",
		"state writable", "state 700 root"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: the helper's confinement: no %q in:\n%s", m.name, want, out)
		}
	}
}
