package helperapi

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	hex64  = strings.Repeat("ab", 32)
	hex128 = strings.Repeat("cd", 64)
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		in      string
		want    Source
		wantErr string // substring; empty means success
	}{
		{in: "ubuntu-24.04", want: Source{Catalog: "ubuntu-24.04"}},
		{in: " debian-12 ", want: Source{Catalog: "debian-12"}},
		{in: "ubuntu-22.04", wantErr: "known are debian-12, ubuntu-24.04"},
		{in: "disk.qcow2", wantErr: "write ./disk.qcow2"},
		{in: "", wantErr: "empty image source"},
		{in: "https://example.com/a/disk.img", wantErr: "no checksum vouches for it; add ,checksum=sha256:<hex> (the publisher's), or trust the server's TLS alone with --insecure-no-checksum"},
		{in: "https://example.com/a/disk.img,insecure-no-checksum", want: Source{URL: "https://example.com/a/disk.img", InsecureNoChecksum: true}},
		{in: "http://example.com/a/disk.img,insecure-no-checksum", wantErr: "plain http is refused without a checksum"},
		{in: "https://example.com/disk.img,checksum=sha256:" + hex64 + ",insecure-no-checksum", wantErr: "not both"},
		{in: "https://example.com/disk.img,checksum=sha256:" + strings.ToUpper(hex64),
			want: Source{URL: "https://example.com/disk.img", Checksum: Checksum{Algo: "sha256", Hex: hex64}}},
		{in: "http://example.com/disk.img,checksum=sha512:" + hex128,
			want: Source{URL: "http://example.com/disk.img", Checksum: Checksum{Algo: "sha512", Hex: hex128}}},
		{in: "http://example.com/disk.img", wantErr: "plain http is refused without a checksum"},
		{in: "ftp://example.com/disk.img", wantErr: `scheme "ftp" is not supported`},
		{in: "https:///disk.img", wantErr: "no host"},
		{in: "https://example.com/", wantErr: "no file name"},
		{in: "https://example.com/disk.img,checksum=md5:abc", wantErr: "write sha256:<hex> or sha512:<hex>"},
		{in: "https://example.com/disk.img,checksum=sha256:abc", wantErr: "sha256 needs 64 hex digits, got 3"},
		{in: "https://example.com/disk.img,checksum=sha256:" + strings.Repeat("zz", 32), wantErr: "not hex"},
		{in: "./disk.qcow2", want: Source{File: &File{Path: "./disk.qcow2"}}},
		{in: "/srv/images/disk.img", want: Source{File: &File{Path: "/srv/images/disk.img"}}},
		{in: `C:\images\disk.img`, want: Source{File: &File{Path: `C:\images\disk.img`}}},
		{in: "file=disk.img", want: Source{File: &File{Path: "disk.img"}}},
		{in: "file=", wantErr: "path is empty"},
		{in: "kernel=out/vmlinuz,initrd=out/initrd.img",
			want: Source{Kernel: &File{Path: "out/vmlinuz"}, Initrd: &File{Path: "out/initrd.img"}}},
		{in: "kernel=vmlinuz,initrd=initrd,cmdline=console=ttyS0,115200 root=/dev/vda",
			want: Source{Kernel: &File{Path: "vmlinuz"}, Initrd: &File{Path: "initrd"}, Cmdline: "console=ttyS0,115200 root=/dev/vda"}},
		{in: "kernel=vmlinuz", want: Source{Kernel: &File{Path: "vmlinuz"}}},
		{in: "initrd=initrd.img", wantErr: "kernel=PATH is missing"},
		{in: "kernel=a,kernel=b", wantErr: "kernel= given twice"},
		{in: "kernel=a,root=/dev/vda", wantErr: `unknown key "root"`},
		{in: "kernel=,initrd=b", wantErr: `"kernel=" needs a path`},
		{in: "kernel=a,cmdline=", wantErr: "cmdline= is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSource(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSource(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSource(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(File{}, "Body")); diff != "" {
				t.Errorf("ParseSource(%q) (-want +got):\n%s", tt.in, diff)
			}
			// The command-line form reads back to the same source.
			again, err := ParseSource(got.String())
			if err != nil {
				t.Fatalf("ParseSource(%q) of String(): %v", got.String(), err)
			}
			if diff := cmp.Diff(got, again, cmpopts.IgnoreFields(File{}, "Body")); diff != "" {
				t.Errorf("String() round trip (-first +again):\n%s", diff)
			}
		})
	}
}

func TestSourceValidate(t *testing.T) {
	tests := []struct {
		name    string
		src     Source
		wantErr string
	}{
		{"empty", Source{}, "image source is empty"},
		{"two kinds", Source{Catalog: "debian-12", URL: "https://example.com/x.img"}, "set only one"},
		{"checksum without URL", Source{Catalog: "debian-12", Checksum: Checksum{Algo: "sha256", Hex: hex64}}, "a checksum goes only with a URL"},
		{"bad checksum", Source{URL: "https://example.com/x.img", Checksum: Checksum{Algo: "sha256", Hex: "00"}}, "64 hex digits"},
		{"cmdline alone", Source{Cmdline: "quiet"}, "kernel=PATH is missing"},
		{"https without checksum", Source{URL: "https://example.com/x.img"}, "no checksum vouches for it"},
		{"insecure without URL", Source{Catalog: "debian-12", InsecureNoChecksum: true}, "goes only with a URL"},
		{"ok", Source{URL: "https://example.com/x.img", InsecureNoChecksum: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.src.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	src, err := ParseSource("kernel=a/vmlinuz,initrd=b/initrd")
	if err != nil {
		t.Fatal(err)
	}
	fs := src.Files()
	if len(fs) != 2 || fs[0] != src.Kernel || fs[1] != src.Initrd {
		t.Fatalf("Files() = %v, want the kernel and the initrd", fs)
	}
	if fs := (Source{Catalog: "debian-12"}).Files(); len(fs) != 0 {
		t.Fatalf("catalog Files() = %v, want none", fs)
	}
}

func TestSourceJSON(t *testing.T) {
	for _, in := range []string{
		"debian-12",
		"https://example.com/disk.img,checksum=sha512:" + hex128,
		"./disk.qcow2",
		"kernel=vmlinuz,initrd=initrd.img,cmdline=console=ttyS0,115200",
	} {
		src, err := ParseSource(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range src.Files() {
			f.Size, f.SHA256, f.Body = 3, hex64, strings.NewReader("abc")
		}
		b, err := json.Marshal(src)
		if err != nil {
			t.Fatal(err)
		}
		var back Source
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(src, back, cmpopts.IgnoreFields(File{}, "Body")); diff != "" {
			t.Errorf("%s: JSON round trip (-sent +received):\n%s", b, diff)
		}
		for _, f := range back.Files() {
			if f.Body != nil {
				t.Errorf("%s: Body came through JSON", b)
			}
		}
	}
}

// Every catalog image names its login user, so `vm ssh` needs no --user
// for it.
func TestCatalogUser(t *testing.T) {
	for _, n := range CatalogNames() {
		if CatalogUser(n) == "" {
			t.Errorf("catalog image %s has no login user", n)
		}
	}
	if u := CatalogUser("file=sha256:ab"); u != "" {
		t.Errorf("an image of the operator's has login user %q, want none", u)
	}
}
