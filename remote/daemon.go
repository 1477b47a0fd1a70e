package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/butter-cloud/butter/assets"
	"github.com/butter-cloud/butter/helperapi"
)

// How the helper daemon runs on a machine.
const (
	DaemonSystemd    = "systemd"    // the butter-helper.service unit
	DaemonSupervised = "supervised" // `butter helper supervise` in the background
)

// DaemonOptions tune StartDaemon.
type DaemonOptions struct {
	// Args are more `butter helper daemon` flags (e.g. --accel tcg); they
	// apply to the supervised daemon only (the systemd unit is fixed).
	Args []string
	// Wait bounds the wait for the daemon to answer; default 30 s.
	Wait time.Duration
}

// supervisedLog is where the supervised daemon's log goes (0600, in the
// 0700 state folder; under systemd the journal has it). Past
// supervisedLogMax bytes it is moved to helper.log.1 when the supervisor
// (re)starts, so at most two are kept.
const (
	supervisedLog    = helperapi.DefaultStateDir + "/helper.log"
	supervisedLogMax = 16 << 20
)

// Daemon is how StartDaemon found or left the helper daemon.
type Daemon struct {
	// Mode is DaemonSystemd or DaemonSupervised.
	Mode string
	// Started says it was started (or restarted) now; false: it was
	// running already, as it should.
	Started bool
}

// StartDaemon makes sure `h helper daemon` runs on the machine and answers:
// as the systemd unit butter-helper.service where systemd runs (installed,
// enabled, restarted when the unit changed), otherwise under
// `butter helper supervise` started with setsid nohup (restarted when it
// runs another binary).
func (c *Client) StartDaemon(ctx context.Context, h Helper, o DaemonOptions) (Daemon, error) {
	out, err := c.Output(ctx, false, `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd; else echo none; fi`)
	if err != nil {
		return Daemon{}, fmt.Errorf("start helper daemon on %s: %w", c.Host, err)
	}
	d := Daemon{Mode: DaemonSupervised}
	if strings.TrimSpace(string(out)) == "systemd" {
		d.Mode = DaemonSystemd
		d.Started, err = c.startSystemd(ctx, h)
	} else {
		d.Started, err = c.startSupervised(ctx, h, o.Args)
	}
	if err != nil {
		return Daemon{}, fmt.Errorf("start helper daemon on %s: %w", c.Host, err)
	}
	wait := o.Wait
	if wait == 0 {
		wait = 30 * time.Second
	}
	if err := c.waitDaemon(ctx, h, wait, d.Mode); err != nil {
		return Daemon{}, err
	}
	return d, nil
}

// startSystemd installs the unit and makes sure it runs; it says whether
// it started (or restarted) it.
func (c *Client) startSystemd(ctx context.Context, h Helper) (bool, error) {
	unit, err := assets.HelperUnit{Binary: h.Path, StateDir: helperapi.DefaultStateDir, Socket: helperapi.DefaultSocket}.Render()
	if err != nil {
		return false, err
	}
	unitPath := path.Join("/etc/systemd/system", assets.HelperUnitName)
	sum := sha256.Sum256([]byte(unit))
	hexSum := hex.EncodeToString(sum[:])
	have, err := c.remoteSHA256(ctx, true, unitPath)
	if err != nil {
		return false, err
	}
	name := shellQuote(assets.HelperUnitName)
	if have == hexSum {
		// Same unit: make sure it is enabled and running.
		out, err := c.Output(ctx, true, "was=running; systemctl is-active --quiet "+name+" || was=started; systemctl enable --now "+name+" && echo $was")
		return strings.TrimSpace(string(out)) == "started", err
	}
	if err := c.Upload(ctx, Upload{Path: unitPath, Mode: 0o644, SHA256: hexSum, Body: strings.NewReader(unit), Root: true}); err != nil {
		return false, err
	}
	return true, c.Run(ctx, Cmd{Root: true, Line: "systemctl daemon-reload && systemctl enable " + name + " && systemctl restart " + name})
}

// startSupervised starts the supervisor unless one runs h already; one
// running another binary is stopped first (it stops its daemon). It says
// whether it started one.
func (c *Client) startSupervised(ctx context.Context, h Helper, args []string) (bool, error) {
	pidFile := helperapi.DefaultSupervisePIDFile
	start := ShellJoin(append([]string{h.Path, "helper", "supervise", "--pid-file", pidFile}, args...)...)
	script := fmt.Sprintf(`set -e
bin=%s
pidfile=%s
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
    if [ "$(readlink "/proc/$pid/exe")" = "$bin" ]; then echo running; exit 0; fi
    kill "$pid" 2>/dev/null || true
    i=0; while [ -d "/proc/$pid" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
    if [ -d "/proc/$pid" ]; then kill -9 "$pid" 2>/dev/null || true; sleep 0.2; fi
  fi
fi
umask 077
mkdir -p %s
log=%s
if [ -f "$log" ] && [ "$(wc -c <"$log")" -gt %d ]; then mv -f "$log" "$log.1"; fi
if [ -f "$log" ]; then chmod 600 "$log"; fi
setsid nohup %s </dev/null >>"$log" 2>&1 &
echo started
`, shellQuote(h.Path), shellQuote(pidFile), shellQuote(path.Dir(supervisedLog)), shellQuote(supervisedLog), supervisedLogMax, start)
	out, err := c.Output(ctx, true, script)
	return strings.TrimSpace(string(out)) == "started", err
}

// waitDaemon polls `helper facts` until the daemon answers.
func (c *Client) waitDaemon(ctx context.Context, h Helper, wait time.Duration, mode string) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	line := ShellJoin(h.Path, "helper", "facts") + " >/dev/null"
	var last error
	for {
		err := c.Run(ctx, Cmd{Root: true, Line: line})
		if err == nil {
			return nil
		}
		if _, ok := err.(*SudoError); ok {
			return err
		}
		if ctx.Err() == nil {
			last = err
		}
		select {
		case <-ctx.Done():
			where := "journalctl -u " + assets.HelperUnitName
			if mode == DaemonSupervised {
				where = supervisedLog
			}
			return fmt.Errorf("the helper daemon on %s did not answer within %s (its log: %s): %v", c.Host, wait, where, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
