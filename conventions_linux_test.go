package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
)

// TestQuietAndLogged: on a lab machine over real SSH, a step is printed
// when it happens (machine add installs and starts the helper and says the
// prerequisites' notes once; later verbs print none of that; a daemon
// that died is started again and only that is said); machine list shows
// the userspace-WireGuard note in its problem column; every remote
// command is in the log file, no key and no secret of the environment is;
// and `lab up` on the lab that is up says so and exits 0.
func TestQuietAndLogged(t *testing.T) {
	needE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const envSecret = "env-secret-do-not-log-5c1e"
	e, name, underlay := newE2E(t, ctx, "qt", "BUTTER_TEST_TOKEN="+envSecret)
	home, bin := e.home, e.butter
	e.must("lab", "up", "--name", name, "--underlay", underlay.String(), "--machines", "1", "--add=false", "--demo=false", "--open=false")
	b, err := os.ReadFile(filepath.Join(home, ".config", "butter", "lab-"+name, "lab.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &e.lab); err != nil {
		t.Fatal(err)
	}

	// lab up again: it is up; nothing is built.
	if r := e.callEnv(e.env, "lab", "up", "--name", name, "--underlay", underlay.String(), "--open=false"); r.code != 0 ||
		!strings.Contains(r.stdout, "lab "+name+" is up already") || r.stderr != "" {
		t.Fatalf("lab up on the lab that is up: %s\nwant exit 0 saying it is up, nothing on stderr", r)
	}

	var facts helperapi.Facts
	add := e.call("machine", "add", "m1", "--address", sim.HostAddr(underlay, 1).Addr().String(),
		"--user", "root", "--identity", e.lab.Key, "--accel", "tcg")
	if add.code != 0 {
		t.Fatalf("machine add: %s", add)
	}
	if err := json.Unmarshal([]byte(e.onMachine("m1", bin, "helper", "facts")), &facts); err != nil {
		t.Fatal(err)
	}
	userspace := !facts.KernelWireGuard
	for _, want := range []string{"m1: connected as root; checking prerequisites\n", "m1: installed the helper ", "m1: started the helper daemon (supervised)\n"} {
		if strings.Count(add.stderr, want) != 1 {
			t.Errorf("machine add said %q, want %q once", add.stderr, want)
		}
	}
	if n := strings.Count(add.stderr, "WireGuard in userspace"); userspace && n != 1 || !userspace && n != 0 {
		t.Errorf("machine add said %q: the userspace note %d times, want %v", add.stderr, n, userspace)
	}

	list := e.call("machine", "list")
	if list.code != 0 || list.stderr != "" {
		t.Fatalf("machine list: %s\nwant exit 0, quiet", list)
	}
	if has := strings.Contains(list.stdout, cloud.NoteUserspaceWireGuard); has != userspace {
		t.Errorf("machine list:\n%s\nshows the userspace note: %v, want %v", list.stdout, has, userspace)
	}

	quiet := []string{"installed the helper", "started the helper daemon", "checking prerequisites", "userspace"}
	create := e.call("network", "create", "n1")
	if create.code != 0 {
		t.Fatalf("network create: %s", create)
	}
	for _, not := range quiet {
		if strings.Contains(create.stderr, not) {
			t.Errorf("network create said %q, which did not happen now:\n%s", not, create.stderr)
		}
	}

	// The daemon dies: the next verb starts it and says only that.
	e.onMachine("m1", "sh", "-c", `pid=$(cat `+helperapi.DefaultSupervisePIDFile+`); kill $pid; while [ -d /proc/$pid ]; do sleep 0.1; done`)
	sync := e.call("sync", "m1")
	if sync.code != 0 || !strings.Contains(sync.stderr, "m1: started the helper daemon (supervised)\n") {
		t.Fatalf("sync after the daemon died: %s\nwant it started again", sync)
	}
	for _, not := range quiet[:1] {
		if strings.Contains(sync.stderr, not) {
			t.Errorf("sync said %q:\n%s", not, sync.stderr)
		}
	}

	// The log: every remote command with its outcome, no secret.
	logb, err := os.ReadFile(filepath.Join(home, ".local", "state", "butter", "butter.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := string(logb)
	for _, want := range []string{`msg="ssh dial" host=` + sim.HostAddr(underlay, 1).Addr().String(), `msg="remote command" host=`,
		`helper supervise --pid-file`, `msg="helper call" host=`, `method=`, `msg="butter ran" args="--inventory ` + e.lab.Inventory + ` sync m1" exit=0`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	key, err := os.ReadFile(e.lab.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range append(strings.Fields(string(key)), envSecret) {
		if len(secret) > 8 && strings.Contains(log, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if st, err := os.Stat(filepath.Join(home, ".local", "state", "butter", "butter.log")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file: %v, %v; want mode 0600", st.Mode(), err)
	}
}
