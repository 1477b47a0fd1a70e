package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

// fakeServer serves files on a loopback TLS server and counts requests.
type fakeServer struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	hits  map[string]int
	// chunk and delay make the server write slowly.
	chunk int
	delay time.Duration
	// stall makes the server send the headers and the first chunk of a
	// larger file, then wait until the client goes away; done is closed
	// when that handler returns.
	stall bool
	done  chan struct{}
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{files: map[string][]byte{}, hits: map[string]int{}, chunk: 64 * 1024, done: make(chan struct{})}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits[r.URL.Path]++
	body, ok := f.files[r.URL.Path]
	chunk, delay, stall := f.chunk, f.delay, f.stall
	f.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	for off := 0; off < len(body); off += chunk {
		if _, err := w.Write(body[off:min(off+chunk, len(body))]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		if stall && off+chunk < len(body) {
			<-r.Context().Done()
			close(f.done)
			return
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeServer) put(path string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[path] = body
}

func (f *fakeServer) hitsOn(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

// addCatalog serves content as the catalog image name for arch, with a
// checksum file in the publisher's format listing sumOf (content, unless
// a test wants a mismatch). It returns the image's and checksum file's
// paths on the server.
func (f *fakeServer) addCatalog(t *testing.T, name, arch string, content, sumOf []byte) (imagePath, sumsPath string) {
	t.Helper()
	imageURL, sumsURL, sigURL, file, err := catalogURLs(name, arch, f.URL)
	if err != nil {
		t.Fatal(err)
	}
	imagePath, sumsPath = strings.TrimPrefix(imageURL, f.URL), strings.TrimPrefix(sumsURL, f.URL)
	var sums string
	switch catalog[name].algo {
	case "sha256":
		// Ubuntu's form: binary mode, "<hex> *<name>", among other files.
		sums = fmt.Sprintf("%x *%s.manifest\n%x *%s\n", sha256.Sum256([]byte("other")), file, sha256.Sum256(sumOf), file)
	case "sha512":
		// Debian's form: text mode, "<hex>  <name>".
		sums = fmt.Sprintf("%x  %s.json\n%x  %s\n", sha512.Sum512([]byte("other")), file, sha512.Sum512(sumOf), file)
	}
	f.put(imagePath, content)
	f.put(sumsPath, []byte(sums))
	if sigURL != "" {
		f.put(strings.TrimPrefix(sigURL, f.URL), detachSign(t, testSigner(t), []byte(sums), false))
	}
	return imagePath, sumsPath
}

func newStore(t *testing.T, f *fakeServer, dir string) *Store {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "images")
	}
	s := New(dir)
	s.Arch = "amd64"
	if f != nil {
		s.Mirror = f.URL
		s.Client = f.Client()
	}
	s.Keyring = openpgp.EntityList{testSigner(t)}
	return s
}

// fakeQCOW2 is a small qcow2-looking image with random content after the
// header, n bytes long.
func fakeQCOW2(n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(n)})
	rng.Read(b)
	copy(b, qcow2Header(3, "", 0))
	return b
}

func fakeRaw(n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), 1}).Read(b)
	b[0], b[1] = 0xeb, 0x63
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ensureLeavesNothing asks s for src and wants it refused with an error
// that says want, and nothing left behind in the store.
func ensureLeavesNothing(t *testing.T, s *Store, src helperapi.Source, want string) {
	t.Helper()
	if _, err := s.Ensure(t.Context(), src, nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Ensure error = %v, want one that says %q", err, want)
	}
	if left := leftovers(t, s.Dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// leftovers lists what is in dir besides the images, the index and locks:
// after a failure it must be empty.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		switch e.Name() {
		case indexFile, ".index.lock", ".locks":
		default:
			names = append(names, e.Name())
		}
	}
	return names
}

// recorder collects progress reports and checks them.
type recorder struct {
	mu sync.Mutex
	ps []helperapi.Progress
}

func (r *recorder) add(p helperapi.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ps = append(r.ps, p)
}

// check asserts that reports were made for each phase in want, that Done
// never went down within a name and phase nor passed a known Total, and
// that each phase in want ended at its Total.
func (r *recorder) check(t *testing.T, want ...helperapi.Phase) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	type key struct {
		name  string
		phase helperapi.Phase
	}
	last := map[key]helperapi.Progress{}
	for _, p := range r.ps {
		k := key{p.Name, p.Phase}
		if prev, ok := last[k]; ok && p.Done < prev.Done {
			t.Errorf("progress went back: %+v after %+v", p, prev)
		}
		if p.Total >= 0 && p.Done > p.Total {
			t.Errorf("progress past its total: %+v", p)
		}
		last[k] = p
	}
	for _, ph := range want {
		found := false
		for k, p := range last {
			if k.phase == ph {
				found = true
				if p.Total >= 0 && p.Done != p.Total {
					t.Errorf("phase %s of %s ended at %d of %d", ph, k.name, p.Done, p.Total)
				}
			}
		}
		if !found {
			t.Errorf("no %s progress reported; got %+v", ph, r.ps)
		}
	}
}

func TestEnsureCatalog(t *testing.T) {
	tests := []struct {
		name, arch string
		content    []byte
		format     helperapi.Format
	}{
		{"ubuntu-24.04", "amd64", fakeQCOW2(700 * 1024), helperapi.FormatQCOW2},
		{"ubuntu-24.04", "arm64", fakeQCOW2(300 * 1024), helperapi.FormatQCOW2},
		{"debian-12", "amd64", fakeQCOW2(500 * 1024), helperapi.FormatQCOW2},
		{"debian-12", "arm64", fakeRaw(200 * 1024), helperapi.FormatRaw},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.arch, func(t *testing.T) {
			f := newFakeServer(t)
			f.delay = 20 * time.Millisecond
			imagePath, sumsPath := f.addCatalog(t, tt.name, tt.arch, tt.content, tt.content)
			s := newStore(t, f, "")
			s.Arch = tt.arch
			var rec recorder
			img, err := s.Ensure(t.Context(), helperapi.Source{Catalog: tt.name}, rec.add)
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			sum := sha256Hex(tt.content)
			want := helperapi.Image{
				ID:      sum,
				Name:    tt.name,
				Sources: []string{tt.name + "/" + tt.arch},
				Format:  tt.format,
				Disk: &helperapi.Blob{
					File:   "base-" + sum + "." + string(tt.format),
					Path:   filepath.Join(s.Dir, "base-"+sum+"."+string(tt.format)),
					Size:   int64(len(tt.content)),
					SHA256: sum,
				},
			}
			if diff := cmp.Diff(want, img, cmpIgnore...); diff != "" {
				t.Errorf("Ensure (-want +got):\n%s", diff)
			}
			if !strings.Contains(img.Verified, f.URL+sumsPath) {
				t.Errorf("Verified = %q, want it to name %s", img.Verified, sumsPath)
			}
			got, err := os.ReadFile(img.Disk.Path)
			if err != nil || !bytes.Equal(got, tt.content) {
				t.Errorf("cached file differs from the served image (err %v)", err)
			}
			if n := f.hitsOn(imagePath); n != 1 {
				t.Errorf("image downloaded %d times, want 1", n)
			}
			rec.check(t, helperapi.PhaseDownload, helperapi.PhaseVerify)

			// Cached: the server is not asked again.
			if _, err := s.Ensure(t.Context(), helperapi.Source{Catalog: tt.name}, nil); err != nil {
				t.Fatal(err)
			}
			if n := f.hitsOn(imagePath) + f.hitsOn(sumsPath); n != 2 {
				t.Errorf("server asked %d times in all, want 2 (image and checksums once)", n)
			}
		})
	}
}

// cmpIgnore leaves out what depends on the clock or the server.
var cmpIgnore = []cmp.Option{
	cmp.FilterPath(func(p cmp.Path) bool {
		s := p.String()
		return s == "Fetched" || s == "Verified"
	}, cmp.Ignore()),
}

func TestCatalogResolvesOffline(t *testing.T) {
	f := newFakeServer(t)
	content := fakeQCOW2(100 * 1024)
	f.addCatalog(t, "ubuntu-24.04", "amd64", content, content)
	s := newStore(t, f, "")
	first, err := s.Ensure(t.Context(), helperapi.Source{Catalog: "ubuntu-24.04"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()

	// A fresh store over the same folder, as after a restart, with no way
	// to reach any server.
	s2 := newStore(t, nil, s.Dir)
	s2.Mirror = "https://127.0.0.1:1"
	again, err := s2.Ensure(t.Context(), helperapi.Source{Catalog: "ubuntu-24.04"}, nil)
	if err != nil {
		t.Fatalf("Ensure with the server gone: %v", err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("offline Ensure (-online +offline):\n%s", diff)
	}
	img, ok, err := s2.Lookup(t.Context(), helperapi.Source{Catalog: "ubuntu-24.04"})
	if err != nil || !ok || img.ID != first.ID {
		t.Errorf("Lookup = %v, %v, %v; want the cached image", img.ID, ok, err)
	}
	if _, ok, err := s2.Lookup(t.Context(), helperapi.Source{Catalog: "debian-12"}); err != nil || ok {
		t.Errorf("Lookup(debian-12) = %v, %v; want not cached", ok, err)
	}
}

func TestCatalogRefetchesLostFile(t *testing.T) {
	f := newFakeServer(t)
	content := fakeQCOW2(100 * 1024)
	imagePath, _ := f.addCatalog(t, "debian-12", "amd64", content, content)
	s := newStore(t, f, "")
	img, err := s.Ensure(t.Context(), helperapi.Source{Catalog: "debian-12"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(img.Disk.Path); err != nil {
		t.Fatal(err)
	}
	if imgs, err := s.List(t.Context()); err != nil || len(imgs) != 0 {
		t.Errorf("List with the file gone = %v, %v; want nothing", imgs, err)
	}
	if _, err := s.Ensure(t.Context(), helperapi.Source{Catalog: "debian-12"}, nil); err != nil {
		t.Fatal(err)
	}
	if n := f.hitsOn(imagePath); n != 2 {
		t.Errorf("image downloaded %d times, want 2", n)
	}
}

func TestCatalogFailures(t *testing.T) {
	good := fakeQCOW2(300 * 1024)
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *fakeServer)
		src     helperapi.Source
		wantErr []string
	}{
		{
			name: "sha256 mismatch",
			setup: func(t *testing.T, f *fakeServer) {
				f.addCatalog(t, "ubuntu-24.04", "amd64", good, []byte("what the publisher signed"))
			},
			src: helperapi.Source{Catalog: "ubuntu-24.04"},
			wantErr: []string{
				"sha256 mismatch for ubuntu-24.04-server-cloudimg-amd64.img",
				"expected " + sha256Hex([]byte("what the publisher signed")),
				"got " + sha256Hex(good),
				"SHA256SUMS",
				"nothing was cached",
			},
		},
		{
			name: "sha512 mismatch",
			setup: func(t *testing.T, f *fakeServer) {
				f.addCatalog(t, "debian-12", "amd64", good, []byte("other"))
			},
			src: helperapi.Source{Catalog: "debian-12"},
			wantErr: []string{
				"sha512 mismatch",
				fmt.Sprintf("expected %x", sha512.Sum512([]byte("other"))),
				fmt.Sprintf("got %x", sha512.Sum512(good)),
			},
		},
		{
			name: "no checksum file",
			setup: func(t *testing.T, f *fakeServer) {
				_, sums := f.addCatalog(t, "debian-12", "amd64", good, good)
				delete(f.files, sums)
			},
			src:     helperapi.Source{Catalog: "debian-12"},
			wantErr: []string{"SHA512SUMS: server answered 404"},
		},
		{
			name: "no line in checksum file",
			setup: func(t *testing.T, f *fakeServer) {
				_, sums := f.addCatalog(t, "debian-12", "amd64", good, good)
				f.put(sums, []byte(hex128+"  something-else.qcow2\n"))
			},
			src:     helperapi.Source{Catalog: "debian-12"},
			wantErr: []string{"no line for debian-12-generic-amd64.qcow2"},
		},
		{
			name: "an installer ISO",
			setup: func(t *testing.T, f *fakeServer) {
				f.addCatalog(t, "debian-12", "amd64", iso(), iso())
			},
			src:     helperapi.Source{Catalog: "debian-12"},
			wantErr: []string{"ISO 9660", "nothing was cached"},
		},
		{
			name:    "unknown name",
			setup:   func(t *testing.T, f *fakeServer) {},
			src:     helperapi.Source{Catalog: "fedora-40"},
			wantErr: []string{`unknown catalog image "fedora-40": known are debian-12, ubuntu-24.04`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			tt.setup(t, f)
			s := newStore(t, f, "")
			_, err := s.Ensure(t.Context(), tt.src, nil)
			wantRefused(t, s, err, tt.wantErr)
			if imgs, err := s.List(t.Context()); err != nil || len(imgs) != 0 {
				t.Errorf("List = %v, %v; want nothing cached", imgs, err)
			}
		})
	}
}

func TestEnsureURL(t *testing.T) {
	content := fakeRaw(150 * 1024)
	sum256 := helperapi.Checksum{Algo: "sha256", Hex: sha256Hex(content)}
	s512 := sha512.Sum512(content)
	sum512 := helperapi.Checksum{Algo: "sha512", Hex: hex.EncodeToString(s512[:])}
	bad := helperapi.Checksum{Algo: "sha256", Hex: hex64}
	tests := []struct {
		name    string
		path    string
		sum     helperapi.Checksum
		plain   bool // serve over http
		wantErr []string
	}{
		{name: "no checksum, insecure", path: "/disk.img"},
		{name: "sha256", path: "/disk.img", sum: sum256},
		{name: "sha512", path: "/disk.img", sum: sum512},
		{name: "http with checksum", path: "/disk.img", sum: sum256, plain: true},
		{name: "mismatch", path: "/disk.img", sum: bad, wantErr: []string{"sha256 mismatch for disk.img", "expected " + hex64, "got " + sum256.Hex, "given with the URL"}},
		{name: "not found", path: "/nope.img", wantErr: []string{"nope.img: server answered 404"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.put("/disk.img", content)
			base, client := f.URL, f.Client()
			if tt.plain {
				plain := httptest.NewServer(http.HandlerFunc(f.serve))
				t.Cleanup(plain.Close)
				base, client = plain.URL, plain.Client()
			}
			s := newStore(t, nil, "")
			s.Client = client
			src := helperapi.Source{URL: base + tt.path, Checksum: tt.sum, InsecureNoChecksum: tt.sum.IsZero()}
			var rec recorder
			img, err := s.Ensure(t.Context(), src, rec.add)
			if len(tt.wantErr) > 0 {
				wantRefused(t, s, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if img.ID != sum256.Hex || img.Format != helperapi.FormatRaw || img.Name != "disk.img" || img.Disk.File != "base-"+sum256.Hex+".raw" {
				t.Errorf("Ensure = %+v, want a raw disk.img with ID %s", img, sum256.Hex)
			}
			if !slices.Equal(img.Sources, []string{src.String()}) {
				t.Errorf("Sources = %q, want %q", img.Sources, src.String())
			}
			if tt.sum.IsZero() != (img.Verified == "") {
				t.Errorf("Verified = %q with checksum %q", img.Verified, tt.sum)
			}
			rec.check(t, helperapi.PhaseDownload, helperapi.PhaseVerify)
		})
	}
}

// An https URL needs a checksum, or the operator's --insecure-no-checksum.
func TestHTTPSWithoutChecksumRefused(t *testing.T) {
	f := newFakeServer(t)
	f.put("/disk.img", fakeRaw(1024))
	s := newStore(t, f, "")
	_, err := s.Ensure(t.Context(), helperapi.Source{URL: f.URL + "/disk.img"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no checksum vouches for it") || !strings.Contains(err.Error(), "--insecure-no-checksum") {
		t.Fatalf("Ensure error = %v, want the URL refused without a checksum", err)
	}
	if n := f.hitsOn("/disk.img"); n != 0 {
		t.Errorf("the image was requested %d times before the refusal", n)
	}
}

func TestHTTPWithoutChecksumRefused(t *testing.T) {
	s := newStore(t, nil, "")
	_, err := s.Ensure(t.Context(), helperapi.Source{URL: "http://127.0.0.1:1/disk.img"}, nil)
	if err == nil || !strings.Contains(err.Error(), "plain http is refused without a checksum") {
		t.Fatalf("Ensure error = %v, want plain http refused", err)
	}
}

func TestRedirectAwayFromHTTPS(t *testing.T) {
	content := fakeRaw(10 * 1024)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(content) }))
	t.Cleanup(plain.Close)
	f := newFakeServer(t)
	f.Config.Handler = http.RedirectHandler(plain.URL+"/disk.img", http.StatusFound)

	s := newStore(t, f, "")
	_, err := s.Ensure(t.Context(), helperapi.Source{URL: f.URL + "/disk.img", InsecureNoChecksum: true}, nil)
	if err == nil || !strings.Contains(err.Error(), "leaves https and no checksum vouches for the content") {
		t.Fatalf("Ensure error = %v, want the redirect refused", err)
	}
	// With a checksum the content is vouched for wherever it comes from.
	_, err = s.Ensure(t.Context(), helperapi.Source{URL: f.URL + "/disk.img", Checksum: helperapi.Checksum{Algo: "sha256", Hex: sha256Hex(content)}}, nil)
	if err != nil {
		t.Fatalf("Ensure with checksum: %v", err)
	}
}

// errReader fails the test if anything reads it.
type errReader struct{ t *testing.T }

func (r errReader) Read([]byte) (int, error) {
	r.t.Error("the upload was read although the content is cached")
	return 0, errors.New("must not be read")
}

func upload(path string, content []byte) *helperapi.File {
	return &helperapi.File{Path: path, Size: int64(len(content)), SHA256: sha256Hex(content), Body: bytes.NewReader(content)}
}

func TestUpload(t *testing.T) {
	content := fakeQCOW2(400 * 1024)
	tests := []struct {
		name    string
		file    *helperapi.File
		wantErr []string
	}{
		{name: "ok", file: upload("/home/op/disk.qcow2", content)},
		{name: "upper-case sha", file: func() *helperapi.File {
			f := upload("disk.qcow2", content)
			f.SHA256 = strings.ToUpper(f.SHA256)
			return f
		}()},
		{name: "wrong sha", file: func() *helperapi.File {
			f := upload("disk.qcow2", content)
			f.SHA256 = hex64
			return f
		}(), wantErr: []string{"sha256 mismatch for disk.qcow2", "expected " + hex64, "got " + sha256Hex(content), "computed by the operator"}},
		{name: "short", file: func() *helperapi.File {
			f := upload("disk.qcow2", content)
			f.Body = bytes.NewReader(content[:1000])
			return f
		}(), wantErr: []string{fmt.Sprintf("expected %d bytes, got 1000", len(content))}},
		{name: "long", file: func() *helperapi.File {
			f := upload("disk.qcow2", content)
			f.Size = 1000
			return f
		}(), wantErr: []string{"expected 1000 bytes, got 1001 or more"}},
		{name: "no body", file: &helperapi.File{Path: "disk.qcow2", Size: 1, SHA256: hex64}, wantErr: []string{"no data attached"}},
		{name: "bad sha", file: &helperapi.File{Path: "disk.qcow2", Size: 1, SHA256: "xyz", Body: strings.NewReader("x")}, wantErr: []string{"upload image disk.qcow2", "sha256 needs 64 hex digits"}},
		{name: "backing file", file: upload("evil.qcow2", qcow2Header(3, "/dev/sda", 0)), wantErr: []string{`backing file "/dev/sda"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, nil, "")
			var rec recorder
			img, err := s.Ensure(t.Context(), helperapi.Source{File: tt.file}, rec.add)
			if len(tt.wantErr) > 0 {
				wantRefused(t, s, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if img.ID != sha256Hex(content) || img.Format != helperapi.FormatQCOW2 || img.Name != "disk.qcow2" {
				t.Errorf("Ensure = %+v", img)
			}
			rec.check(t, helperapi.PhaseUpload, helperapi.PhaseVerify)

			// Again, from another operator's path: cached by content, the
			// body is not read.
			again := &helperapi.File{Path: "other.qcow2", Size: tt.file.Size, SHA256: tt.file.SHA256, Body: errReader{t}}
			if img2, err := s.Ensure(t.Context(), helperapi.Source{File: again}, nil); err != nil || img2.ID != img.ID {
				t.Errorf("second Ensure = %v, %v; want the cached image", img2.ID, err)
			}
			again.Body = nil
			if _, ok, err := s.Lookup(t.Context(), helperapi.Source{File: again}); err != nil || !ok {
				t.Errorf("Lookup = %v, %v; want cached", ok, err)
			}
		})
	}
}

func TestKernelBoot(t *testing.T) {
	kernel, initrd := []byte("MZ fake kernel"), []byte("070701 fake initramfs")
	s := newStore(t, nil, "")
	src, err := helperapi.ParseSource("kernel=/build/vmlinuz,initrd=/build/initrd.img,cmdline=console=ttyS0,115200 quiet")
	if err != nil {
		t.Fatal(err)
	}
	src.Kernel, src.Initrd = upload(src.Kernel.Path, kernel), upload(src.Initrd.Path, initrd)
	var rec recorder
	img, err := s.Ensure(t.Context(), src, rec.add)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	want := helperapi.Image{
		ID:      kernelID(src.Kernel, src.Initrd, "console=ttyS0,115200 quiet"),
		Name:    "vmlinuz",
		Sources: []string{"kernel=vmlinuz,initrd=initrd.img,cmdline=console=ttyS0,115200 quiet"},
		Kernel: &helperapi.Blob{File: "kernel-" + sha256Hex(kernel), Path: filepath.Join(s.Dir, "kernel-"+sha256Hex(kernel)),
			Size: int64(len(kernel)), SHA256: sha256Hex(kernel)},
		Initrd: &helperapi.Blob{File: "initrd-" + sha256Hex(initrd), Path: filepath.Join(s.Dir, "initrd-"+sha256Hex(initrd)),
			Size: int64(len(initrd)), SHA256: sha256Hex(initrd)},
		Cmdline: "console=ttyS0,115200 quiet",
	}
	if diff := cmp.Diff(want, img, cmpIgnore...); diff != "" {
		t.Errorf("Ensure (-want +got):\n%s", diff)
	}
	for _, b := range []*helperapi.Blob{img.Kernel, img.Initrd} {
		if got, err := os.ReadFile(b.Path); err != nil || sha256Hex(got) != b.SHA256 {
			t.Errorf("%s: %v", b.File, err)
		}
	}
	rec.check(t, helperapi.PhaseUpload, helperapi.PhaseVerify)

	// The same files with another command line: a new image, no upload.
	other := helperapi.Source{Kernel: &helperapi.File{Path: "vmlinuz", Size: int64(len(kernel)), SHA256: sha256Hex(kernel), Body: errReader{t}},
		Initrd:  &helperapi.File{Path: "initrd.img", Size: int64(len(initrd)), SHA256: sha256Hex(initrd), Body: errReader{t}},
		Cmdline: "console=ttyS0"}
	img2, err := s.Ensure(t.Context(), other, nil)
	if err != nil {
		t.Fatalf("Ensure with another cmdline: %v", err)
	}
	if img2.ID == img.ID || img2.Kernel.File != img.Kernel.File {
		t.Errorf("second kernel image %s shares ID or not the kernel file with %s", img2.ID, img.ID)
	}

	// Removing one keeps the files the other uses.
	if err := s.Remove(t.Context(), img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img.Kernel.Path); err != nil {
		t.Errorf("kernel still used by %s is gone: %v", img2.ID, err)
	}
	if err := s.Remove(t.Context(), img2.ID[:8]); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, s.Dir); len(left) != 0 {
		t.Errorf("left behind after removing both: %v", left)
	}
}

func TestKernelUploadFailureCachesNothing(t *testing.T) {
	s := newStore(t, nil, "")
	kernel := []byte("MZ kernel")
	bad := upload("initrd.img", []byte("initrd"))
	bad.SHA256 = hex64
	ensureLeavesNothing(t, s, helperapi.Source{Kernel: upload("vmlinuz", kernel), Initrd: bad}, "sha256 mismatch for initrd.img")
}

func TestConcurrentEnsureDownloadsOnce(t *testing.T) {
	f := newFakeServer(t)
	f.chunk, f.delay = 32*1024, 10*time.Millisecond
	content := fakeQCOW2(512 * 1024)
	imagePath, sumsPath := f.addCatalog(t, "ubuntu-24.04", "amd64", content, content)
	// Two stores over one folder stand for two processes: they meet only
	// in the lock files.
	s1 := newStore(t, f, "")
	s2 := newStore(t, f, s1.Dir)

	const n = 8
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	recs := make([]recorder, n)
	for i := range n {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		wg.Go(func() {
			img, err := s.Ensure(t.Context(), helperapi.Source{Catalog: "ubuntu-24.04"}, recs[i].add)
			ids[i], errs[i] = img.ID, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != sha256Hex(content) {
			t.Errorf("Ensure %d = %s, %v", i, ids[i], errs[i])
		}
	}
	if got := f.hitsOn(imagePath); got != 1 {
		t.Errorf("image downloaded %d times, want 1", got)
	}
	if got := f.hitsOn(sumsPath); got != 1 {
		t.Errorf("checksums downloaded %d times, want 1", got)
	}
	waited := 0
	for i := range recs {
		recs[i].check(t)
		for _, p := range recs[i].ps {
			if p.Phase == helperapi.PhaseWait {
				waited++
				break
			}
		}
	}
	if waited == 0 {
		t.Error("no caller reported waiting for the download")
	}
	if imgs, err := s1.List(t.Context()); err != nil || len(imgs) != 1 {
		t.Errorf("List = %v, %v; want one image", imgs, err)
	}
}

func TestCancelCleansUp(t *testing.T) {
	t.Run("download", func(t *testing.T) {
		f := newFakeServer(t)
		f.stall = true
		content := fakeQCOW2(1 << 20)
		f.addCatalog(t, "debian-12", "amd64", content, content)
		s := newStore(t, f, "")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var once sync.Once
		_, err := s.Ensure(ctx, helperapi.Source{Catalog: "debian-12"}, func(p helperapi.Progress) {
			// The server sends a chunk and stops: cancel mid-download.
			if p.Phase == helperapi.PhaseDownload {
				once.Do(func() { time.AfterFunc(100*time.Millisecond, cancel) })
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Ensure error = %v, want context.Canceled", err)
		}
		if left := leftovers(t, s.Dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
		select {
		case <-f.done:
		case <-time.After(5 * time.Second):
			t.Error("the request was not abandoned")
		}
	})
	t.Run("upload", func(t *testing.T) {
		s := newStore(t, nil, "")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		endless := &helperapi.File{Path: "big.img", Size: 1 << 40, SHA256: hex64, Body: zeros{}}
		_, err := s.Ensure(ctx, helperapi.Source{File: endless}, func(p helperapi.Progress) {
			if p.Done > 0 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Ensure error = %v, want context.Canceled", err)
		}
		if left := leftovers(t, s.Dir); len(left) != 0 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// zeros is an endless upload that yields to the scheduler now and then.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	clear(p)
	return len(p), nil
}

func TestStalledDownload(t *testing.T) {
	f := newFakeServer(t)
	f.stall = true
	content := fakeQCOW2(1 << 20)
	f.addCatalog(t, "debian-12", "amd64", content, content)
	s := newStore(t, f, "")
	s.StallTimeout = 300 * time.Millisecond
	ensureLeavesNothing(t, s, helperapi.Source{Catalog: "debian-12"}, "no data from the server for 300ms")
}

func TestListRemove(t *testing.T) {
	f := newFakeServer(t)
	ubuntu, debian, disk := fakeQCOW2(100*1024), fakeQCOW2(120*1024), fakeRaw(50*1024)
	f.addCatalog(t, "ubuntu-24.04", "amd64", ubuntu, ubuntu)
	f.addCatalog(t, "debian-12", "amd64", debian, debian)
	s := newStore(t, f, "")
	for _, src := range []helperapi.Source{{Catalog: "ubuntu-24.04"}, {Catalog: "debian-12"}, {File: upload("./my.img", disk)}} {
		if _, err := s.Ensure(t.Context(), src, nil); err != nil {
			t.Fatal(err)
		}
	}
	names := func() []string {
		imgs, err := s.List(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var ns []string
		for _, img := range imgs {
			ns = append(ns, img.Name)
		}
		return ns
	}
	if diff := cmp.Diff([]string{"debian-12", "my.img", "ubuntu-24.04"}, names()); diff != "" {
		t.Errorf("List names (-want +got):\n%s", diff)
	}

	tests := []struct {
		id        string
		wantErr   string
		wantNames []string
	}{
		{id: "centos", wantErr: `no cached image "centos"; List shows`},
		{id: "abc", wantErr: "an ID prefix needs at least 6 characters"},
		{id: "", wantErr: "give an ID, name or source"},
		{id: sha256Hex(disk)[:8], wantNames: []string{"debian-12", "ubuntu-24.04"}},
		{id: "debian-12/amd64", wantNames: []string{"ubuntu-24.04"}},
		{id: "ubuntu-24.04", wantNames: nil},
		{id: "ubuntu-24.04", wantErr: `no cached image "ubuntu-24.04"`},
	}
	for _, tt := range tests {
		err := s.Remove(t.Context(), tt.id)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Remove(%q) error = %v, want one containing %q", tt.id, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Remove(%q): %v", tt.id, err)
			continue
		}
		if diff := cmp.Diff(tt.wantNames, names()); diff != "" {
			t.Errorf("List after Remove(%q) (-want +got):\n%s", tt.id, diff)
		}
	}
	if left := leftovers(t, s.Dir); len(left) != 0 {
		t.Errorf("files left after removing everything: %v", left)
	}
}

func TestRemoveAmbiguousPrefix(t *testing.T) {
	ix := &index{Version: 1, Images: []helperapi.Image{{ID: "abcdef01" + hex64[8:]}, {ID: "abcdef02" + hex64[8:]}}}
	_, err := ix.resolve("abcdef")
	if err == nil || !strings.Contains(err.Error(), `"abcdef" matches 2 cached images`) {
		t.Fatalf("resolve error = %v, want ambiguous", err)
	}
	if i, err := ix.resolve("abcdef02"); err != nil || i != 1 {
		t.Fatalf("resolve(abcdef02) = %d, %v", i, err)
	}
}

func TestDamagedIndex(t *testing.T) {
	s := newStore(t, nil, "")
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, indexFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.List(t.Context())
	if err == nil || !strings.Contains(err.Error(), "is damaged (remove it; cached files are fetched again)") {
		t.Fatalf("List error = %v, want the index called damaged", err)
	}
}

func TestStaleTemporaryFilesRemoved(t *testing.T) {
	s := newStore(t, nil, "")
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	stale, fresh := filepath.Join(s.Dir, partialPrefix+"old"), filepath.Join(s.Dir, partialPrefix+"new")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleAfter)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{partialPrefix + "new"}, leftovers(t, s.Dir)); diff != "" {
		t.Errorf("after cleanup (-want +got):\n%s", diff)
	}
}

var _ io.Reader = zeros{}

// wantRefused checks that err says every one of want and that the refused
// call left nothing behind in the store.
func wantRefused(t *testing.T, s *Store, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("Ensure succeeded; want an error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if left := leftovers(t, s.Dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
