package realmachines

import (
	"fmt"
	"strings"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
)

// Logins on the tier's machines. Debian's sshd opens a logind session for
// a login (pam_systemd), and logind answers once root's user manager
// (user@0.service) runs: where no session is open, a login starts the
// manager, and it stops 10 s after the last session ends. On hardware
// that is a fraction of a second; on these TCG machines it is seconds (4
// to 12 seen in butter's log), which each direct verb, a new connection
// every time, paid against a list's 10 s deadline for a machine, so lists
// missed answering machines. Root's manager lingers on the tier's
// machines (loginctl enable-linger root), as where root stays logged in,
// and the cost is measured first and logged.

// lingerRoot makes root's user manager linger on every machine; with
// measure, it first logs what a login costs on m with no session open,
// right after another, and with the manager lingering.
func (r *rig) lingerRoot(measure *machine) {
	r.t.Helper()
	var cold, warm time.Duration
	if measure != nil {
		time.Sleep(12 * time.Second) // no session open: the manager has stopped
		cold, warm = r.login(measure), r.login(measure)
	}
	for _, m := range r.machines {
		r.mustSh(m, "loginctl enable-linger root && for i in $(seq 60); do systemctl is-active -q user@0.service && exit 0; sleep 1; done; systemctl status --no-pager user@0.service; exit 1")
	}
	if measure != nil {
		time.Sleep(12 * time.Second)
		lingering := r.login(measure)
		r.t.Logf("FIGURE login: SSH login and `uname -sm` on %s, no session open %s, right after another %s, root's manager lingering %s (%.2f of the first)",
			measure.name, cold.Round(10*time.Millisecond), warm.Round(10*time.Millisecond), lingering.Round(10*time.Millisecond), lingering.Seconds()/cold.Seconds())
	}
}

// login is how long a new connection to m takes to log in and run
// `uname -sm`.
func (r *rig) login(m *machine) time.Duration {
	r.t.Helper()
	start := time.Now()
	c, err := r.dial(m, time.Minute)
	if err != nil {
		r.t.Fatal(err)
	}
	defer c.Close()
	out, err := testbed.RunSSH(r.ctx, c, "uname -sm")
	if err != nil || !strings.HasPrefix(out, "Linux") {
		r.t.Fatal(fmt.Errorf("%s: uname -sm: %q, %w", m.name, out, err))
	}
	return time.Since(start)
}
