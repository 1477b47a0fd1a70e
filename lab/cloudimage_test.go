package lab

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
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

func TestCloudImageKey(t *testing.T) {
	k := CloudImageKey()
	if k != CloudImageKey() {
		t.Fatal("CloudImageKey is not stable")
	}
	if !strings.HasPrefix(k, "cloud-debian12-") || len(k) != len("cloud-debian12-")+16 {
		t.Errorf("CloudImageKey = %q, want cloud-debian12-<16 hex digits>", k)
	}
}

// TestBuildCloudImage builds (or finds in the cache) the real image. It
// needs root, debootstrap and the apt mirror: ~2.5 minutes cold.
func TestBuildCloudImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Debian image with debootstrap (~2.5 min cold); not in -short")
	}
	mustOrSkip := func(ok bool, why string) {
		if ok {
			return
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: %s", why)
		}
		t.Skip(why)
	}
	mustOrSkip(os.Geteuid() == 0, "needs root for debootstrap")
	missing := CloudImageTools()
	mustOrSkip(len(missing) == 0, "missing "+strings.Join(missing, ", "))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := BuildCloudImage(ctx, "", testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cloud image %s ready in %s", img.Dir, time.Since(start).Round(100*time.Millisecond))
	for _, f := range []string{img.Disk, img.Kernel, img.Initrd} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d MiB", f, fi.Size()>>20)
	}
}

// testLog writes a command's output to the test log, line by line.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Helper()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
