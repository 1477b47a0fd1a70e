package tui

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// The confirmation of a VM's removal shows, before anything moves, what
// its machine would run: its dry run, asked of the helper over the real
// protocol. Keeping the VM changes nothing.
func TestConfirmShowsThePlan(t *testing.T) {
	fc, path := newFakeCluster(t, 2, 1)
	d := dashboard(t, fc, path)
	d.send(press("3"))
	d.send(press("g"))
	d.send(press("d"))
	d.until("the plan in the confirmation", 5*time.Second, screenShows("Remove VM node001-vm01?", "On the machines:",
		"node001: virsh destroy node001-vm01", "node001: virsh undefine node001-vm01"))
	d.send(press("n"))
	d.until("the form closed", 5*time.Second, func(m *Model) bool { return m.form == nil })
	if _, ok := fc.side("node001").vms["node001-vm01"]; !ok {
		t.Error("keeping the VM removed it")
	}
}

// A long plan is cut to a few lines, the rest counted, with the verb that
// shows them all; machines away and failures are said in a line each.
func TestPlanText(t *testing.T) {
	var steps []helperapi.DryRunStep
	for range 10 {
		steps = append(steps, helperapi.DryRunStep{Change: "c", Commands: []string{"nft -f - <<'EOF'\ntable inet butter\nEOF"}})
	}
	d := cloud.DryRun{Machines: []cloud.MachineDryRun{
		{Machine: "a", Away: true, Err: errors.New("dial: timeout")},
		{Machine: "b", Err: errors.New("the machine's helper is not this butter's\nupgrade it")},
		{Machine: "c", Steps: steps},
	}}
	got := planText(d, nil, "butter network remove blue")
	want := "On the machines:\na: away; catches up when back\nb: no plan: the machine's helper is not this butter's upgrade it\n" +
		strings.Repeat("c: nft -f - <<'EOF'\n", 6) + "… and 4 more (`butter network remove blue --dry-run` shows them all)"
	if got != want {
		t.Errorf("plan text:\n%s\nwant:\n%s", got, want)
	}
	if got := planText(cloud.DryRun{}, nil, "x"); got != "It changes nothing on the machines." {
		t.Errorf("empty plan: %q", got)
	}
}
