package cli

import (
	"fmt"
	"strings"
	"unicode"

	// go-humanize reads and writes byte sizes both ways (SI "GB" and IEC
	// "GiB"); it is small, dependency-free and already in the module graph.
	"github.com/dustin/go-humanize"
)

// sizeHelp is how every size flag's help explains its units.
const sizeHelp = "G or GiB = 1024³ bytes, GB = 1000³"

// parseSize reads a size and returns MiB, rounded up. A bare letter (512M,
// 2G, 1T) is binary, as qemu and libvirt read it, so 2G = 2GiB; GB, MB and
// TB are decimal (2GB = 2×10⁹ bytes = 1908 MiB). A bare number is in unit
// ("M" or "G").
func parseSize(s, unit string) (int, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	num, suffix := t, unit
	if i >= 0 {
		num, suffix = t[:i], t[i:]
	}
	if len(suffix) == 1 {
		suffix = strings.ToUpper(suffix) + "iB"
	}
	switch strings.ToUpper(suffix) {
	case "MIB", "GIB", "TIB", "MB", "GB", "TB":
	default:
		return 0, fmt.Errorf("size %q: unit %q: use M, G or T (binary: 2G = 2GiB), or MB, GB, TB (decimal)", s, suffix)
	}
	b, err := humanize.ParseBytes(num + suffix)
	if num == "" || err != nil || b == 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, such as 512M or 2G", s)
	}
	const mib = 1 << 20
	return int((b + mib - 1) / mib), nil
}
