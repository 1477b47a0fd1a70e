package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BlobSize takes its kind and digest from a request: nothing but a known
// kind and a hex digest becomes a path.
func TestBlobSizeRefusesPaths(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "images")
	os.Mkdir(dir, 0o700)
	os.WriteFile(filepath.Join(root, "secret"), []byte("x"), 0o600)
	s := New(dir)
	for _, tc := range [][2]string{{"../secret", ""}, {"kernel", "/../../secret"}, {"..", "/secret"}, {"kernel", strings.Repeat("g", 64)}} {
		if n, ok := s.BlobSize(tc[0], tc[1]); ok {
			t.Errorf("BlobSize(%q, %q) = %d, true; want false", tc[0], tc[1], n)
		}
	}
	sum := strings.Repeat("a", 64)
	os.WriteFile(filepath.Join(dir, "initrd-"+sum), []byte("abc"), 0o600)
	if n, ok := s.BlobSize("initrd", strings.ToUpper(sum)); !ok || n != 3 {
		t.Errorf("a kept blob: %d, %v", n, ok)
	}
}
