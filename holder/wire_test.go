package holder

import (
	"bytes"
	"strings"
	"testing"
)

// A write larger than a frame is split into frames that read back whole.
func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	big := strings.Repeat("x", maxFrame+10)
	if n, err := (&frameWriter{w: &buf, typ: frameStdout}).Write([]byte(big)); err != nil || n != len(big) {
		t.Fatalf("write: %d, %v", n, err)
	}
	if err := writeFrame(&buf, frameExit, []byte(`{"error":"exit 1"}`)); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for {
		typ, data, err := readFrame(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if typ == frameExit {
			if string(data) != `{"error":"exit 1"}` {
				t.Errorf("exit frame %q", data)
			}
			break
		}
		if typ != frameStdout || len(data) > maxFrame {
			t.Fatalf("frame %q of %d bytes", typ, len(data))
		}
		got.Write(data)
	}
	if got.String() != big {
		t.Errorf("read back %d bytes, want %d", got.Len(), len(big))
	}
	// A frame claiming more than the bound is refused.
	bad := []byte{frameStdout, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := readFrame(bytes.NewReader(bad)); err == nil {
		t.Error("an oversized frame was read")
	}
}
