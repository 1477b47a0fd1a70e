package testbed

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// CloudBoot is what a guest printed on its console up to cloud-init's
// last stage.
type CloudBoot struct {
	Log        string
	Complaints []string // cloud-init's warnings and errors
}

// WaitCloudInit waits until the console log at logPath, read with run
// (e.g. inside a lab machine), shows cloud-init's "Cloud-init v. …
// finished" line, and fails early on a kernel panic. It reads the log
// once a second: TCG needs the cores.
func WaitCloudInit(ctx context.Context, run Runner, logPath string, within time.Duration) (CloudBoot, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		out, _ := run(ctx, "/bin/cat", logPath)
		text := strings.ReplaceAll(string(out), "\r", "")
		var b CloudBoot
		finished := false
		for l := range strings.Lines(text) {
			switch {
			case strings.Contains(l, "Cloud-init v. ") && strings.Contains(l, " finished at "):
				finished = true
			case strings.Contains(l, "cloud-init") && (strings.Contains(l, "[WARNING]") || strings.Contains(l, "[ERROR]")):
				b.Complaints = append(b.Complaints, strings.TrimSpace(l))
			case strings.Contains(l, "Kernel panic"):
				return CloudBoot{}, fmt.Errorf("%s: kernel panic:\n%s", logPath, text)
			}
		}
		if finished {
			b.Log = text
			return b, nil
		}
		select {
		case <-ctx.Done():
			return CloudBoot{}, fmt.Errorf("%s: no \"Cloud-init v. … finished\" within %s; it shows:\n%s", logPath, within, text)
		case <-time.After(time.Second):
		}
	}
}
