package printable

import "testing"

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain text, ünïcödé ✓ 漢字", "plain text, ünïcödé ✓ 漢字"},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"\x1b[2J\x1b[Hcleared", `\x1b[2J\x1b[Hcleared`},
		{"\x1b]0;owned\x07title", `\x1b]0;owned\atitle`},
		{"progress 10%\rdone", `progress 10%\rdone`},
		{"bell\a back\b form\f vt\v nul\x00", `bell\a back\b form\f vt\v nul\x00`},
		{"del\x7f", `del\u007f`},
		{"csi\u009b31m c1", `csi\u009b31m c1`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"admin\u202e\u2066txt.exe", `admin\u202e\u2066txt.exe`},
		{"\x1b", `\x1b`},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Whatever comes in, no control character but newline and tab goes out.
func FuzzString(f *testing.F) {
	for _, s := range []string{"", "\x1b[31mred", "\xff", "\u202e", "a\r\nb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		if !clean(out) {
			t.Errorf("String(%q) = %q still holds a control character", s, out)
		}
		if clean(s) && out != s {
			t.Errorf("String changed clean text %q to %q", s, out)
		}
	})
}
