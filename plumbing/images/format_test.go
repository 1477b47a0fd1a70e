package images

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// qcow2Header builds the first bytes of a qcow2 image.
func qcow2Header(version uint32, backing string, incompatible uint64) []byte {
	h := make([]byte, 512)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], version)
	if backing != "" {
		binary.BigEndian.PutUint64(h[8:], 200)
		binary.BigEndian.PutUint32(h[16:], uint32(len(backing)))
		copy(h[200:], backing)
	}
	binary.BigEndian.PutUint64(h[72:], incompatible)
	return h
}

func iso() []byte {
	b := make([]byte, 40000)
	copy(b[0x8001:], "CD001")
	return b
}

func TestDetectFormat(t *testing.T) {
	tests := []struct {
		name    string
		head    []byte
		want    helperapi.Format
		wantErr string
	}{
		{"qcow2 v3", qcow2Header(3, "", 0), helperapi.FormatQCOW2, ""},
		{"qcow2 v2", qcow2Header(2, "", 0), helperapi.FormatQCOW2, ""},
		{"raw", []byte("\xeb\x63\x90 boot sector and more"), helperapi.FormatRaw, ""},
		{"empty", nil, "", "the file is empty"},
		{"iso", iso(), "", "ISO 9660 installer image"},
		{"gzip", []byte("\x1f\x8b\x08\x00rest"), "", "gunzip"},
		{"xz", []byte("\xfd7zXZ\x00rest"), "", "unxz"},
		{"vmdk", []byte("KDMV\x01\x00\x00\x00"), "", "VMDK"},
		{"backing file", qcow2Header(3, "/etc/shadow", 0), "", `backing file "/etc/shadow"`},
		{"external data", qcow2Header(3, "", qcow2ExternalData), "", "external file"},
		{"qcow2 v4", qcow2Header(4, "", 0), "", "version 4"},
		{"qcow2 cut short", []byte("QFI\xfb\x00\x00\x00\x03"), "", "cut short"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := detectFormat(tt.head, int64(len(tt.head)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("detectFormat error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("detectFormat = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
