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

// supervisedLog is where the supervised daemon's log goes.
const supervisedLog = helperapi.DefaultStateDir + "/helper.log"

// StartDaemon makes sure `h helper daemon` runs on the machine and answers:
// as the systemd unit butter-helper.service where systemd runs (installed,
// enabled, restarted when the unit changed), otherwise under
// `butter helper supervise` started with setsid nohup (restarted when it
// runs another binary). It returns DaemonSystemd or DaemonSupervised.
func (c *Client) StartDaemon(ctx context.Context, h Helper, o DaemonOptions) (string, error) {
	out, err := c.Output(ctx, false, `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo systemd; else echo none; fi`)
	if err != nil {
		return "", fmt.Errorf("start helper daemon on %s: %w", c.Host, err)
	}
	mode := DaemonSupervised
	if strings.TrimSpace(string(out)) == "systemd" {
		mode = DaemonSystemd
		err = c.startSystemd(ctx, h)
	} else {
		err = c.startSupervised(ctx, h, o.Args)
	}
	if err != nil {
		return "", fmt.Errorf("start helper daemon on %s: %w", c.Host, err)
	}
	wait := o.Wait
	if wait == 0 {
		wait = 30 * time.Second
	}
	if err := c.waitDaemon(ctx, h, wait, mode); err != nil {
		return "", err
	}
	return mode, nil
}

func (c *Client) startSystemd(ctx context.Context, h Helper) error {
	unit, err := assets.HelperUnit{Binary: h.Path, StateDir: helperapi.DefaultStateDir, Socket: helperapi.DefaultSocket}.Render()
	if err != nil {
		return err
	}
	unitPath := path.Join("/etc/systemd/system", assets.HelperUnitName)
	sum := sha256.Sum256([]byte(unit))
	hexSum := hex.EncodeToString(sum[:])
	have, err := c.remoteSHA256(ctx, true, unitPath)
	if err != nil {
		return err
	}
	name := shellQuote(assets.HelperUnitName)
	if have == hexSum {
		// Same unit: make sure it is enabled and running.
		return c.Run(ctx, Cmd{Root: true, Line: "systemctl enable --now " + name})
	}
	if err := c.Upload(ctx, Upload{Path: unitPath, Mode: 0o644, SHA256: hexSum, Body: strings.NewReader(unit), Root: true}); err != nil {
		return err
	}
	return c.Run(ctx, Cmd{Root: true, Line: "systemctl daemon-reload && systemctl enable " + name + " && systemctl restart " + name})
}

// startSupervised starts the supervisor unless one runs h already; one
// running another binary is stopped first (it stops its daemon).
func (c *Client) startSupervised(ctx context.Context, h Helper, args []string) error {
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
mkdir -p %s
setsid nohup %s </dev/null >>%s 2>&1 &
echo started
`, shellQuote(h.Path), shellQuote(pidFile), shellQuote(path.Dir(supervisedLog)), start, shellQuote(supervisedLog))
	return c.Run(ctx, Cmd{Root: true, Line: script})
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
