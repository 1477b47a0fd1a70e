package realmachines

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/butter-cloud/butter/assets"
	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/testbed"
)

// listWait is how long the tier's lists wait for each machine: a new
// connection to these TCG machines took up to 6 s to log in and a session
// up to 7 s more while one of them booted (butter's log of a run), beyond
// the 10 s a list waits by default.
const listWait = "30s"

// whyWithin bounds logWhyAway's look into a machine, which is only a
// diagnostic.
const whyWithin = 20 * time.Second

// logWhyAway logs, when a list misses a machine, what the operator sees
// of each (status, problem, and how long `machine list` took) and, for a
// machine that did not answer, its helper daemon's journal since boot: a
// retry that passes later still leaves the reason in the log.
func (r *rig) logWhyAway(what string) {
	r.t.Helper()
	start := time.Now()
	out, err := r.run("machine", "list", "--json", "--timeout", listWait)
	took := time.Since(start).Round(100 * time.Millisecond)
	exit := "exit 0"
	if err != nil {
		exit, _, _ = strings.Cut(err.Error(), "\n")
	}
	var rows []cloud.MachineStatus
	if jerr := json.Unmarshal([]byte(out), &rows); jerr != nil {
		r.t.Logf("%s: machine list (%s, %s): %v: %s", what, took, exit, jerr, out)
		return
	}
	for _, row := range rows {
		r.t.Logf("%s: machine list (%s, %s): %s %s %q", what, took, exit, row.Name, row.Status, row.Problem)
		if row.Status != cloud.StatusOffline {
			continue
		}
		for _, m := range r.machines {
			if m.name != row.Name {
				continue
			}
			// Asked briefly: a machine still booting is not waited for.
			var j string
			c, jerr := r.ssh(m, whyWithin)
			if jerr == nil {
				j, jerr = testbed.RunSSHWithin(r.ctx, c, "uptime; journalctl -b -o short-precise --no-pager -u "+assets.HelperUnitName+" | tail -n 12", whyWithin)
			}
			r.t.Logf("%s: %s's helper daemon (%v):\n%s", what, m.name, jerr, strings.TrimSpace(j))
		}
	}
}
