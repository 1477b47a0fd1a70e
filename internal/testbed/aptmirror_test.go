package testbed

import (
	"strings"
	"testing"
)

func TestMirrorOneLine(t *testing.T) {
	tests := []struct {
		name, list, want string
	}{
		{"plain", "deb http://m.example/debian bookworm main\n", "http://m.example/debian"},
		{"options", "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n", "http://m.example/debian"},
		{"skips deb-src, other suites and comments", "# deb http://a/ bookworm main\ndeb-src http://b/ bookworm main\n" +
			"deb http://c/ bookworm-updates main\ndeb http://d/ cloud-sdk-bookworm main\ndeb http://e/ bookworm main\n", "http://e/"},
		{"no main", "deb http://m.example/debian bookworm contrib\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mirrorOneLine(strings.NewReader(tt.list), "bookworm"); got != tt.want {
				t.Errorf("mirrorOneLine = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMirrorDeb822(t *testing.T) {
	tests := []struct {
		name, sources, want string
	}{
		{"debian.sources", `Types: deb
# a comment
URIs: http://m.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://m.example/debian-security
Suites: bookworm-security
Components: main
`, "http://m.example/debian"},
		{"other suites only", "Types: deb\nURIs: https://n.example/node\nSuites: nodistro\nComponents: main\n", ""},
		{"disabled", "Enabled: no\nTypes: deb\nURIs: http://x/\nSuites: bookworm\nComponents: main\n\nTypes: deb\nURIs: http://y/\nSuites: bookworm\nComponents: main\n", "http://y/"},
		{"sources only", "Types: deb-src\nURIs: http://x/\nSuites: bookworm\nComponents: main\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mirrorDeb822(strings.NewReader(tt.sources), "bookworm"); got != tt.want {
				t.Errorf("mirrorDeb822 = %q, want %q", got, tt.want)
			}
		})
	}
}
