package testbed

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// AptMirror returns the URI of the first Debian archive that apt's own
// configuration (/etc/apt/sources.list and /etc/apt/sources.list.d) lists
// with suite and the main component, so that debootstrap uses the same
// mirror as apt-get.
func AptMirror(suite string) (string, error) {
	var paths []string
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		paths = append(paths, "/etc/apt/sources.list")
	}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	paths = append(paths, more...)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var uri string
		switch {
		case strings.HasSuffix(p, ".sources"):
			uri = mirrorDeb822(f, suite)
		case strings.HasSuffix(p, ".list"):
			uri = mirrorOneLine(f, suite)
		}
		f.Close()
		if uri != "" {
			return uri, nil
		}
	}
	return "", fmt.Errorf("no apt source for Debian %s main in /etc/apt/sources.list or /etc/apt/sources.list.d: add one (apt-get must work)", suite)
}

// mirrorOneLine reads the one-line format: deb [options] uri suite comp….
func mirrorOneLine(r io.Reader, suite string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options, possibly several fields
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 3 && f[1] == suite && slices.Contains(f[2:], "main") {
			return f[0]
		}
	}
	return ""
}

// mirrorDeb822 reads the deb822 format: stanzas of Types, URIs, Suites,
// Components, separated by blank lines.
func mirrorDeb822(r io.Reader, suite string) string {
	stanza := map[string]string{}
	check := func() string {
		defer clear(stanza)
		if stanza["enabled"] == "no" || !slices.Contains(strings.Fields(stanza["types"]), "deb") {
			return ""
		}
		if !slices.Contains(strings.Fields(stanza["suites"]), suite) ||
			!slices.Contains(strings.Fields(stanza["components"]), "main") {
			return ""
		}
		if uris := strings.Fields(stanza["uris"]); len(uris) > 0 {
			return uris[0]
		}
		return ""
	}
	sc := bufio.NewScanner(r)
	last := ""
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			if uri := check(); uri != "" {
				return uri
			}
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" { // continuation
			stanza[last] += " " + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		stanza[last] = strings.TrimSpace(v)
	}
	return check()
}
