package plumbing

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// at is testSpec at generation gen with desired state of that generation;
// tag tells two changes of the same generation apart.
func at(gen int64, tag string) helperapi.Spec {
	s := testSpec()
	if gen == 0 {
		return s
	}
	s.Generation = gen
	s.Desired = &helperapi.Desired{Generation: gen, Mesh: helperapi.DesiredMesh{Prefix: netip.MustParsePrefix("10.99.0.0/16")},
		Machines: []helperapi.DesiredMachine{{Name: "m1", Address: "192.0.2.1", Accel: tag}}}
	return s
}

func TestAdmit(t *testing.T) {
	self := testbed.Key('s')
	selfPeer := at(5, "")
	selfPeer.Peers[0].PublicKey = self
	badDesired := at(5, "")
	badDesired.Desired.Generation = 4
	noMesh := at(5, "")
	noMesh.Mesh.Address = netip.Prefix{}
	for _, tc := range []struct {
		name string
		spec helperapi.Spec
		self string
		held helperapi.Spec
		code int64 // 0: taken
		want string
	}{
		{"first spec", at(1, ""), self, helperapi.Spec{}, 0, ""},
		{"newer generation", at(6, ""), self, at(5, ""), 0, ""},
		{"the same change again", at(5, ""), self, at(5, ""), 0, ""},
		{"a bare spec over a generation", at(0, ""), self, at(5, ""), 0, ""},
		{"a generation over a bare spec", at(2, ""), self, at(0, ""), 0, ""},
		{"no key yet", selfPeer, "", at(4, ""), 0, ""},
		{"older generation", at(4, ""), self, at(5, ""), helperapi.CodeStale, "newer than this change's 4"},
		{"another change of the same generation", at(5, "other"), self, at(5, ""), helperapi.CodeStale, "another butter's change as generation 5"},
		{"this machine as its own peer", selfPeer, self, at(4, ""), helperapi.CodeInvalid, "this machine's own public key"},
		{"desired of another generation", badDesired, self, at(4, ""), helperapi.CodeInvalid, "desired state generation 4"},
		{"no mesh address", noMesh, self, at(4, ""), helperapi.CodeInvalid, "mesh address"},
		// Bad input is bad input, whatever the generation.
		{"bad and stale", noMesh, self, at(9, ""), helperapi.CodeInvalid, "mesh address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := admit(tc.spec, tc.self, tc.held)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			re, ok := err.(*helperapi.RemoteError)
			if !ok || re.Code != tc.code || !strings.Contains(re.Message, tc.want) {
				t.Fatalf("got %v (%T), want code %d saying %q", err, err, tc.code, tc.want)
			}
		})
	}
}

// A network that asks for gretap is refused as bad input, before anything
// changes, where the kernel makes no gretap; auto and vxlan are taken.
func TestBuildable(t *testing.T) {
	net := func(name, tunnel string) helperapi.Network {
		return helperapi.Network{Name: name, ID: 3, Tunnel: tunnel, Peers: []string{"m2"}}
	}
	for _, tc := range []struct {
		name   string
		spec   helperapi.Spec
		gretap bool
		want   string // "": taken
	}{
		{"no networks", testSpec(), false, ""},
		{"auto without gretap", testSpec(net("a", helperapi.TunnelAuto)), false, ""},
		{"vxlan without gretap", testSpec(net("v", helperapi.TunnelVXLAN)), false, ""},
		{"gretap without gretap", testSpec(net("a", helperapi.TunnelAuto), net("g", helperapi.TunnelGretap)), false, `network "g" asks for tunnel gretap`},
		{"gretap with gretap", testSpec(net("g", helperapi.TunnelGretap)), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := buildable(tc.spec, machine{Gretap: tc.gretap})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !helperapi.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid-input refusal saying %q", err, tc.want)
			}
		})
	}
}

// A new key replaces the old one in place: same file, 0600, no other
// copy of the old key in the state folder, and no temporary file left.
func TestNewKeyReplacesTheOld(t *testing.T) {
	dir := t.TempDir()
	s := state{dir}
	if _, ok, err := s.key(); ok || err != nil {
		t.Fatalf("an empty state has a key (%v, %v)", ok, err)
	}
	old, err := s.privateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.saveSpec(at(3, "")); err != nil {
		t.Fatal(err)
	}
	k, err := s.newKey()
	if err != nil {
		t.Fatal(err)
	}
	if k == old {
		t.Fatal("the new key is the old one")
	}
	if got, ok, err := s.key(); err != nil || !ok || got != k {
		t.Fatalf("key after rotation: ok=%v err=%v, want the new one", ok, err)
	}
	fi, err := os.Stat(filepath.Join(dir, keyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (err %v), want 0600", fi.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), old.String()) {
			t.Errorf("%s still holds the old private key", e.Name())
		}
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
