package remote

import (
	"strings"
	"testing"
)

// A command's answer is kept up to its bound; the rest is dropped, and
// said to be.
func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 10}
	for range 1000 {
		if n, err := b.Write([]byte("0123456789abcdef")); n != 16 || err != nil {
			t.Fatalf("Write: %d, %v; want all taken (the command must not block)", n, err)
		}
	}
	if b.String() != "0123456789" {
		t.Errorf("kept %q", b.String())
	}
	if err := b.check("m1", "uname -sm"); err == nil || !strings.Contains(err.Error(), "more than 10 bytes") {
		t.Errorf("check: %v", err)
	}
	ok := &cappedBuffer{max: 10}
	ok.Write([]byte("0123456789"))
	if err := ok.check("m1", "uname -sm"); err != nil {
		t.Errorf("exactly the bound: %v", err)
	}
}
