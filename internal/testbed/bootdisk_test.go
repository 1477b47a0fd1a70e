package testbed

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestCHS(t *testing.T) {
	tests := []struct {
		lba  uint64
		want []byte
	}{
		{0, []byte{0, 1, 0}},
		{2048, []byte{32, 33, 0}},           // what fdisk writes for 1 MiB
		{4194303, []byte{0x15, 0x50, 0x05}}, // the last sector of 2 GiB: c 261, h 21, s 16
		{1 << 30, []byte{254, 0xff, 0xff}},  // beyond CHS: clamped
	}
	for _, tt := range tests {
		if got := chs(tt.lba); !bytes.Equal(got, tt.want) {
			t.Errorf("chs(%d) = % x, want % x", tt.lba, got, tt.want)
		}
	}
}

func TestWriteBootSectors(t *testing.T) {
	boot := make([]byte, sectorSize)
	for i := range mbrCodeEnd {
		boot[i] = 0xcc
	}
	binary.LittleEndian.PutUint64(boot[bootKernelSector:], 1)
	for i := mbrCodeEnd; i < mbrBootSig; i++ {
		boot[i] = 0xee // must not reach the disk: the signature and table are ours
	}
	boot[mbrBootSig], boot[mbrBootSig+1] = 0x55, 0xaa
	core := bytes.Repeat([]byte{0xc0}, 3*sectorSize+7)

	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	const start, sectors = 2048, 8<<20/sectorSize - 2048
	if err := writeBootSectors(path, boot, core, 0x12345678, start, sectors); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(disk) != 8<<20 {
		t.Errorf("disk is now %d bytes, want %d: it must not be truncated or grown", len(disk), 8<<20)
	}
	mbr := disk[:sectorSize]
	if mbr[0] != 0xcc || mbr[bootKernelSector] != 1 || mbr[mbrCodeEnd-1] != 0xcc {
		t.Errorf("boot code not copied: % x", mbr[:16])
	}
	if mbr[bootDriveCheck] != 0x90 || mbr[bootDriveCheck+1] != 0x90 {
		t.Errorf("boot drive check = % x, want nops", mbr[bootDriveCheck:bootDriveCheck+2])
	}
	want := []byte{
		0x78, 0x56, 0x34, 0x12, 0, 0, // signature, reserved
		0x80, 32, 33, 0, 0x83, 5, 4, 1, // active, CHS 0/32/33, Linux, CHS 1/5/4
		0x00, 0x08, 0, 0, 0x00, 0x38, 0, 0, // from 2048, 14336 sectors
	}
	if got := mbr[mbrCodeEnd : mbrPartTable+16]; !bytes.Equal(got, want) {
		t.Errorf("signature and first partition:\n got % x\nwant % x", got, want)
	}
	if !bytes.Equal(mbr[mbrPartTable+16:mbrBootSig], make([]byte, 48)) {
		t.Errorf("partitions 2 to 4 are not empty: % x", mbr[mbrPartTable+16:mbrBootSig])
	}
	if mbr[mbrBootSig] != 0x55 || mbr[mbrBootSig+1] != 0xaa {
		t.Errorf("no boot signature")
	}
	if !bytes.Equal(disk[sectorSize:sectorSize+len(core)], core) {
		t.Errorf("core.img is not at sector 1")
	}

	for _, bad := range []struct {
		name       string
		boot, core []byte
	}{
		{"short boot.img", boot[:100], core},
		{"core.img loaded from elsewhere", func() []byte { b := bytes.Clone(boot); b[bootKernelSector] = 5; return b }(), core},
		{"core.img too big", boot, make([]byte, start*sectorSize)},
		{"no core.img", boot, nil},
	} {
		if err := writeBootSectors(path, bad.boot, bad.core, 1, start, sectors); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}

func TestNewUUID(t *testing.T) {
	u, err := newUUID()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(u) {
		t.Errorf("newUUID = %q, want a version 4 UUID", u)
	}
}
