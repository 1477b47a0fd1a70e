package images

import (
	"slices"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

var (
	hex64  = strings.Repeat("ab", 32)
	hex128 = strings.Repeat("cd", 64)
)

func TestFindSum(t *testing.T) {
	const ubuntu = "" +
		"1111111111111111111111111111111111111111111111111111111111111111 *ubuntu-24.04-server-cloudimg-amd64.manifest\n" +
		"abababababababababababababababababababababababababababababababab *ubuntu-24.04-server-cloudimg-amd64.img\n"
	tests := []struct {
		name, sums, algo, file, want, wantErr string
	}{
		{"binary mode", ubuntu, "sha256", "ubuntu-24.04-server-cloudimg-amd64.img", hex64, ""},
		{"text mode", hex128 + "  debian-12-generic-amd64.qcow2\n", "sha512", "debian-12-generic-amd64.qcow2", hex128, ""},
		{"dot slash", hex64 + "  ./x.img\n", "sha256", "x.img", hex64, ""},
		{"bsd tag", "SHA256 (x.img) = " + hex64 + "\n", "sha256", "x.img", hex64, ""},
		{"upper case", strings.ToUpper(hex64) + " *x.img\r\n", "sha256", "x.img", hex64, ""},
		{"missing", ubuntu, "sha256", "ubuntu-24.04-server-cloudimg-arm64.img", "", "no line for ubuntu-24.04-server-cloudimg-arm64.img"},
		{"wrong length", hex64 + "  x.img\n", "sha512", "x.img", "", "sha512 needs 128 hex digits"},
		{"similar name", hex64 + "  x.img.manifest\n", "sha256", "x.img", "", "no line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findSum(strings.NewReader(tt.sums), tt.algo, tt.file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("findSum error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("findSum = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCatalogURLs(t *testing.T) {
	tests := []struct {
		name, catalog, arch, mirror string
		image, sums, sig            string
		wantErr                     string
	}{
		{name: "ubuntu amd64", catalog: "ubuntu-24.04", arch: "amd64",
			image: "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
			sums:  "https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS",
			sig:   "https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS.gpg"},
		{name: "ubuntu mirror", catalog: "ubuntu-24.04", arch: "arm64", mirror: "https://mirror.lan",
			image: "https://mirror.lan/cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-arm64.img",
			sums:  "https://mirror.lan/cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS",
			sig:   "https://mirror.lan/cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS.gpg"},
		{name: "debian arm64", catalog: "debian-12", arch: "arm64",
			image: "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-arm64.qcow2",
			sums:  "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"},
		{name: "mirror", catalog: "debian-12", arch: "amd64", mirror: "https://mirror.lan/cloud/",
			image: "https://mirror.lan/cloud/cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2",
			sums:  "https://mirror.lan/cloud/cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"},
		{name: "http mirror", catalog: "debian-12", arch: "amd64", mirror: "http://mirror.lan", wantErr: "must be an https://HOST[/PATH] URL"},
		{name: "riscv", catalog: "ubuntu-24.04", arch: "riscv64", wantErr: "no build for this machine's architecture riscv64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			image, sums, sig, _, err := catalogURLs(tt.catalog, tt.arch, tt.mirror)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("catalogURLs error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || image != tt.image || sums != tt.sums || sig != tt.sig {
				t.Fatalf("catalogURLs = %q, %q, %q, %v; want %q, %q, %q", image, sums, sig, err, tt.image, tt.sums, tt.sig)
			}
		})
	}
}

// A Source crosses from the operator to the helper as JSON; the upload's
// data does not.
// The catalog knows where every name the contract offers is.
func TestCatalogMatchesContract(t *testing.T) {
	var names []string
	for n := range catalog {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, helperapi.CatalogNames()) {
		t.Fatalf("catalog has %v, the contract offers %v", names, helperapi.CatalogNames())
	}
}
