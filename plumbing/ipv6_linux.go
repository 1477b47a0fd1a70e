package plumbing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ipv6Conf is where the kernel keeps a link's IPv6 settings; it is missing
// when the kernel runs without IPv6.
const ipv6Conf = "/proc/sys/net/ipv6/conf"

// ipv6Drift reads the IPv6 settings of links and returns the ones that
// differ from ipv6Settings, as (link, key, value now). A link that does
// not exist is skipped: the link's own drift says so.
func ipv6Drift(links []string) ([][3]string, error) {
	var out [][3]string
	for _, l := range links {
		for _, s := range ipv6Settings {
			b, err := os.ReadFile(filepath.Join(ipv6Conf, l, s.Key))
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			if err != nil {
				return out, fmt.Errorf("read ipv6 %s of %q: %w", s.Key, l, err)
			}
			if v := strings.TrimSpace(string(b)); v != s.Value {
				out = append(out, [3]string{l, s.Key, v})
			}
		}
	}
	return out, nil
}

// setIPv6Off turns IPv6 off on links and says what it changed.
func setIPv6Off(links []string) ([]string, error) {
	drift, err := ipv6Drift(links)
	if err != nil {
		return nil, err
	}
	var changes []string
	var errs []error
	for _, d := range drift {
		for _, s := range ipv6Settings {
			if s.Key != d[1] {
				continue
			}
			if err := os.WriteFile(filepath.Join(ipv6Conf, d[0], s.Key), []byte(s.Value+"\n"), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("set ipv6 %s of %q to %s: %w", s.Key, d[0], s.Value, err))
				continue
			}
			changes = append(changes, fmt.Sprintf("set %s ipv6 %s %s", d[0], s.Key, s.Value))
		}
	}
	return changes, errors.Join(errs...)
}
