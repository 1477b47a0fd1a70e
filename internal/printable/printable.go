// Package printable makes text that came from another computer safe to
// show on a terminal: a machine (or a VM, through a machine) can put
// anything in an error message, a VM name or a state, and a terminal takes
// escape sequences in it as commands (move the cursor, retitle the window,
// rewrite what was printed before, hide text). String shows every control
// character as a visible escape instead, so the text reads the same and
// does nothing.
package printable

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// String returns s with its control characters shown escaped ("\x1b",
// "\r", "\u009b"): C0 controls but newline and tab, DEL, C1 controls,
// Unicode's bidirectional overrides (they reorder what follows), and
// bytes that are not UTF-8. Text without any comes back unchanged.
func String(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(c0Escape(r))
		case r == 0x7f || r >= 0x80 && r <= 0x9f || bidi(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func clean(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r < 0x20 && r != '\n' && r != '\t' ||
			r == 0x7f || r >= 0x80 && r <= 0x9f || bidi(r) {
			return false
		}
		i += size
	}
	return true
}

func c0Escape(r rune) string {
	switch r {
	case '\a':
		return `\a`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\r':
		return `\r`
	case '\v':
		return `\v`
	}
	return fmt.Sprintf(`\x%02x`, r)
}

// bidi tells Unicode's explicit direction controls: embeddings, overrides
// and isolates (the "trojan source" characters).
func bidi(r rune) bool {
	return r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 || r == 0x200e || r == 0x200f || r == 0x061c
}
