package cli

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// parseSize reads sizes such as 512M, 2G, 1.5GiB or 1024 (in unit) and
// returns MiB.
func parseSize(s, unit string) (int, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, suffix := t, unit
	if i >= 0 {
		num, suffix = t[:i], strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(t[i:], "iB"), "B"))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, such as 512M or 2G", s)
	}
	switch strings.ToUpper(suffix) {
	case "M":
		return int(v), nil
	case "G":
		return int(v * 1024), nil
	case "T":
		return int(v * 1024 * 1024), nil
	}
	return 0, fmt.Errorf("size %q: unit %q: use M, G or T", s, suffix)
}
