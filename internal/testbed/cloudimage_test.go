package testbed

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

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
	NeedRoot(t) // debootstrap
	NeedCloudImageTools(t, false)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	img, err := BuildCloudImage(ctx, "", LogWriter{T: t})
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
