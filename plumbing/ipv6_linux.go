package plumbing

import (
	"errors"
	"fmt"
)

// ipv6Drift reads the IPv6 settings of links and returns the ones that
// differ from ipv6Settings, as (link, key, value now). A link that does
// not exist is skipped (the link's own drift says so), as is every link
// on a kernel without IPv6.
func ipv6Drift(links []string) ([][3]string, error) {
	var out [][3]string
	for _, l := range links {
		for _, s := range ipv6Settings {
			v, ok, err := linkSetting{"ipv6", s.Key}.read(l)
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
			if v != s.Value {
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
			if err := (linkSetting{"ipv6", s.Key}).write(d[0], s.Value); err != nil {
				errs = append(errs, err)
				continue
			}
			changes = append(changes, fmt.Sprintf("set %s ipv6 %s %s", d[0], s.Key, s.Value))
		}
	}
	return changes, errors.Join(errs...)
}
