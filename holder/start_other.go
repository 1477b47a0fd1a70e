//go:build !unix

package holder

import "errors"

// StartProcess is not available here: verbs dial themselves.
func StartProcess(exe string, env []string, args ...string) error {
	return errors.New("no holder on this system")
}
