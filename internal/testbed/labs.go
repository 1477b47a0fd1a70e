package testbed

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/butter-cloud/butter/lab/sim"
)

// OwnerDir records which process owns each lab a test claimed: one file per
// lab, named after it, holding the owner's PID and start time. A lab whose
// owner is gone was left by a crashed run, and the next run with the same
// prefix removes it.
const OwnerDir = "/run/butter-testbed"

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,2}$`)
	labSeq   atomic.Uint64
	runSeed  = uint64(os.Getpid())<<32 ^ uint64(time.Now().UnixNano())
)

// LabName returns a lab name unique to this test run: prefix (1 to 3
// lower-case letters and digits, starting with a letter, not "bt") and
// base-36 digits from this process's ID,
// the time it started and a counter, 8 characters in all, as sim.CheckName
// allows.
func LabName(prefix string) string {
	if !prefixRE.MatchString(prefix) || strings.HasPrefix(prefix, "bt") {
		panic(fmt.Sprintf("testbed: lab name prefix %q: want 1 to 3 lower-case letters and digits, starting with a letter, not bt", prefix))
	}
	width := 8 - len(prefix)
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", runSeed, labSeq.Add(1))
	n := h.Sum64() % pow36(width)
	s := strconv.FormatUint(n, 36)
	return prefix + strings.Repeat("0", width-len(s)) + s
}

func pow36(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 36
	}
	return p
}

// ClaimLab returns a new lab name for t (LabName(prefix)) and records this
// process as its owner until t ends, for a test that builds the lab itself
// (through `butter lab up`, say). First it removes the labs of the same
// prefix whose owner has died.
func ClaimLab(t testing.TB, prefix string) string {
	t.Helper()
	name := LabName(prefix)
	cleanStale(t, prefix)
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		t.Fatalf("claim lab %s: %v", name, err)
	}
	owner := filepath.Join(OwnerDir, name)
	if err := os.WriteFile(owner, []byte(selfOwner()), 0o644); err != nil {
		t.Fatalf("claim lab %s: %v", name, err)
	}
	t.Cleanup(func() { _ = os.Remove(owner) })
	return name
}

// NewLab builds a lab for t with cfg, named ClaimLab(t, prefix), and takes
// it down when t ends. It skips t (or fails it, with CI=true) where no lab
// can run.
func NewLab(t testing.TB, prefix string, cfg sim.Config) *sim.Lab {
	t.Helper()
	NeedLab(t)
	cfg.Name = ClaimLab(t, prefix)
	return UpLab(t, cfg)
}

// UpLab builds a lab for t with cfg, whose name ClaimLab gave, and takes
// it down when t ends; see NewLab.
func UpLab(t testing.TB, cfg sim.Config) *sim.Lab {
	t.Helper()
	NeedLab(t)
	start := time.Now()
	l, err := sim.Up(t.Context(), cfg)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Logf("lab %s up, %d machines: %v", l.Name, len(l.Machines), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		if err := l.Down(ctx); err != nil {
			t.Errorf("lab %s down: %v", l.Name, err)
		}
		t.Logf("lab %s down: %v", l.Name, time.Since(start).Round(time.Millisecond))
	})
	return l
}

// Underlay returns an underlay prefix for lab name, for a lab with a host
// link (the root namespace routes its underlay, so labs up at once need
// their own): a /24 in 10.128.0.0/10 chosen by the name, skipping any that
// overlaps an address of this host.
func Underlay(name string) netip.Prefix {
	h := fnv.New32a()
	h.Write([]byte(name))
	start := h.Sum32() % (1 << 14)
	var taken []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				taken = append(taken, p.Masked())
			}
		}
	}
	for i := range uint32(1 << 14) {
		n := (start + i) % (1 << 14)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + n>>8), byte(n), 0}), 24)
		free := true
		for _, o := range taken {
			if o.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p
		}
	}
	panic("testbed: no free underlay in 10.128.0.0/10")
}

// selfOwner is what OwnerDir records for this process.
var selfOwner = sync.OnceValue(func() string { return owner(os.Getpid()) })

// owner is "PID start-time" of a live process, "" if there is none.
func owner(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'. The start time is field 22 of the whole line.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return ""
	}
	return fmt.Sprintf("%d %s", pid, f[19])
}

// cleanStale removes the labs of prefix whose recorded owner has died,
// with their records.
func cleanStale(t testing.TB, prefix string) {
	entries, err := os.ReadDir(OwnerDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || len(name) != 8 || sim.CheckName(name) != nil {
			continue
		}
		path := filepath.Join(OwnerDir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		rec := strings.TrimSpace(string(b))
		pid, _, _ := strings.Cut(rec, " ")
		n, err := strconv.Atoi(pid)
		if err != nil || owner(n) == rec {
			continue // alive, or not ours to judge
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = sim.Clean(ctx, name)
		cancel()
		if err != nil {
			t.Logf("remove lab %s left by process %s: %v", name, pid, err)
			continue
		}
		_ = os.Remove(path)
		t.Logf("removed lab %s left by process %s", name, pid)
	}
}
