// Package assets holds the files butter installs on machines, embedded in
// the binary and rendered for each machine.
package assets

import (
	_ "embed"
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
)

//go:embed butter-helper.service.tmpl
var helperUnit string

var helperUnitTmpl = template.Must(template.New("unit").Parse(helperUnit))

// HelperUnitName is the systemd unit that runs the helper daemon.
const HelperUnitName = "butter-helper.service"

// HelperUnit is what the helper's systemd unit needs to know.
type HelperUnit struct {
	Binary   string // the installed helper binary
	StateDir string
	Socket   string
}

// Render returns the unit file. Paths must be absolute and plain, since
// systemd splits ExecStart on white space.
func (u HelperUnit) Render() (string, error) {
	for name, p := range map[string]string{"binary": u.Binary, "state dir": u.StateDir, "socket": u.Socket} {
		if !filepath.IsAbs(p) || strings.ContainsAny(p, " \t\n\"'\\%$;") {
			return "", fmt.Errorf("helper unit %s %q: want an absolute path without spaces, quotes or %%", name, p)
		}
	}
	// systemd makes StateDirectory= under /var/lib and RuntimeDirectory=
	// under /run, and makes them writable under ProtectSystem=strict.
	state, ok := strings.CutPrefix(filepath.Clean(u.StateDir), "/var/lib/")
	if !ok {
		return "", fmt.Errorf("helper unit state dir %q: want a folder under /var/lib", u.StateDir)
	}
	run, ok := strings.CutPrefix(filepath.Dir(filepath.Clean(u.Socket)), "/run/")
	if !ok {
		return "", fmt.Errorf("helper unit socket %q: want a file in a folder under /run", u.Socket)
	}
	data := struct {
		HelperUnit
		StateDirName, RuntimeDirName string
	}{u, state, run}
	var b strings.Builder
	if err := helperUnitTmpl.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render %s: %w", HelperUnitName, err)
	}
	return b.String(), nil
}
