package plumbing

import (
	"encoding/json"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// The helper decodes any request params without a panic, and what it
// decodes is then checked the way the handler checks it.
func FuzzDecodeParams(f *testing.F) {
	f.Add(helperapi.MethodApply, []byte(`{"mesh":{"address":"10.99.0.1/16","listen_port":51820}}`))
	f.Add(helperapi.MethodVMCreate, []byte(`{"name":"web","network":"blue","image":"debian-12","address":"10.0.0.5","cpus":1}`))
	f.Add(helperapi.MethodVMAction, []byte(`{"name":"../x","action":"remove"}`))
	f.Add(helperapi.MethodVMAction, []byte(`{"name":"web","action":"stop","timeout_seconds":1e308}`))
	f.Add(helperapi.MethodCheck, []byte(`null`))
	f.Add(helperapi.MethodVMCreate, []byte(`{"name":"web","image":"https://x/y.img,checksum=sha256:zz","unknown":true}`))
	f.Fuzz(func(t *testing.T, method string, raw []byte) {
		msg := json.RawMessage(raw)
		switch method {
		case helperapi.MethodApply, helperapi.MethodPrepare, helperapi.MethodCheck:
			var s helperapi.Spec
			if decodeParams(method, &msg, &s) == nil {
				_ = s.Validate()
			}
		case helperapi.MethodVMCreate:
			var r helperapi.VMRequest
			if decodeParams(method, &msg, &r) == nil {
				if r.WithDefaults().Check() == nil {
					if !helperapi.ValidName(r.Name) {
						t.Fatalf("a VM request with name %q passed its check", r.Name)
					}
					_, _ = helperapi.ParseSource(r.Image)
				}
			}
		default:
			var a helperapi.VMActionRequest
			if decodeParams(method, &msg, &a) == nil && helperapi.RefuseName("vm", a.Name) == nil {
				if !helperapi.ValidName(a.Name) {
					t.Fatalf("name %q passed", a.Name)
				}
			}
		}
	})
}
