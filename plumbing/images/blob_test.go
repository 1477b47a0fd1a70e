package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

func TestPutBlobThenKernelBoot(t *testing.T) {
	ctx := context.Background()
	s := New(t.TempDir())
	kernel, initrd := []byte(strings.Repeat("k", 5000)), []byte(strings.Repeat("i", 3000))
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	for _, p := range []struct {
		kind string
		data []byte
	}{{helperapi.BlobKernel, kernel}, {helperapi.BlobInitrd, initrd}} {
		b, err := s.PutBlob(ctx, p.kind, &helperapi.File{Path: "/op/" + p.kind, Size: int64(len(p.data)), SHA256: sum(p.data),
			Body: bytes.NewReader(p.data)}, nil)
		if err != nil || b.Size != int64(len(p.data)) {
			t.Fatalf("put %s: %+v, %v", p.kind, b, err)
		}
		// Again: nothing is read.
		if _, err := s.PutBlob(ctx, p.kind, &helperapi.File{Path: "x", Size: int64(len(p.data)), SHA256: sum(p.data)}, nil); err != nil {
			t.Fatalf("put %s again without a body: %v", p.kind, err)
		}
	}
	if _, err := s.PutBlob(ctx, helperapi.BlobInitrd, &helperapi.File{Path: "bad", Size: 3, SHA256: sum([]byte("abc")), Body: strings.NewReader("abd")}, nil); err == nil {
		t.Fatal("a blob whose content does not match its sha256 was kept")
	}
	if _, ok := s.BlobSize(helperapi.BlobInitrd, sum([]byte("abc"))); ok {
		t.Fatal("the mismatched blob was left behind")
	}
	size, ok := s.BlobSize(helperapi.BlobKernel, sum(kernel))
	if !ok || size != 5000 {
		t.Fatalf("blob size %d %v", size, ok)
	}
	// A kernel boot naming both by content finds them without bodies.
	img, err := s.Ensure(ctx, helperapi.Source{Kernel: &helperapi.File{Path: "vmlinux", Size: 5000, SHA256: sum(kernel)},
		Initrd: &helperapi.File{Path: "initrd.gz", Size: 3000, SHA256: sum(initrd)}, Cmdline: "quiet"}, nil)
	if err != nil || img.Kernel == nil || img.Initrd == nil || img.Initrd.SHA256 != sum(initrd) {
		t.Fatalf("kernel boot from blobs: %+v, %v", img, err)
	}
	if _, err := s.PutBlob(ctx, "disk", &helperapi.File{Path: "x", Size: 1, SHA256: sum([]byte("x"))}, nil); err == nil {
		t.Fatal("an unknown blob kind was accepted")
	}
}
