package images

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// A download of unknown length that runs past the maximum image size
// stops there, and its partial file is removed; one that announces too
// much is refused before it starts.
func TestMaxImageSize(t *testing.T) {
	chunk := []byte(strings.Repeat("\x00", 64<<10))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/announced.img" {
			w.Header().Set("Content-Length", "10000000")
		}
		for range 10000 { // 640 MiB, far past the bound
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	s := New(dir)
	s.Client = srv.Client()
	s.MaxImageSize = 1 << 20
	for _, path := range []string{"/endless.img", "/announced.img"} {
		_, err := s.Ensure(context.Background(), helperapi.Source{URL: srv.URL + path, InsecureNoChecksum: true}, nil)
		if err == nil || !strings.Contains(err.Error(), "maximum image size") {
			t.Errorf("%s: %v; want the maximum image size named", path, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), partialPrefix) {
			t.Errorf("a partial file is left: %s", e.Name())
		}
	}
	// So is an upload, whatever size it claims.
	_, err := s.Ensure(context.Background(), helperapi.Source{File: &helperapi.File{
		Path: "big.img", Size: 2 << 20, SHA256: strings.Repeat("a", 64), Body: strings.NewReader(strings.Repeat("\x00", 2<<20))}}, nil)
	if err == nil || !strings.Contains(err.Error(), "maximum image size") {
		t.Errorf("oversized upload: %v", err)
	}
}
