package plumbing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// linkSetting is one per-link kernel setting, /proc/sys/net/<family>/conf/
// <link>/<key>: an IPv4 link's forwarding, or one of ipv6Settings.
type linkSetting struct{ family, key string }

func (s linkSetting) path(link string) string {
	return filepath.Join("/proc/sys/net", s.family, "conf", link, s.key)
}

// read is the setting's value on link; ok is false where the link, or
// the kernel's IPv6, is not there.
func (s linkSetting) read(link string) (v string, ok bool, err error) {
	b, err := os.ReadFile(s.path(link))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read %s %s of %q: %w", s.family, s.key, link, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

// write sets the setting on link to v.
func (s linkSetting) write(link, v string) error {
	if err := os.WriteFile(s.path(link), []byte(v+"\n"), 0o644); err != nil {
		return fmt.Errorf("set %s %s of %q to %s: %w", s.family, s.key, link, v, err)
	}
	return nil
}

// sysctl is the setting's name for sysctl(8).
func (s linkSetting) sysctl(link string) string {
	return "net." + s.family + ".conf." + link + "." + s.key
}
