//go:build !linux

package plumbing

import (
	"context"
	"errors"

	"github.com/butter-cloud/butter/helperapi"
)

var errNotLinux = errors.New("the butter helper runs on Linux machines only")

// Helper is the machine side; it runs on Linux only.
type Helper struct{}

func New(opts Options) (*Helper, error)      { return nil, errNotLinux }
func (h *Helper) Close() error               { return nil }
func (h *Helper) PublicKey() (string, error) { return "", errNotLinux }
func (h *Helper) Apply(ctx context.Context, spec helperapi.Spec) (helperapi.Report, error) {
	return helperapi.Report{}, errNotLinux
}
func (h *Helper) Prepare(ctx context.Context, spec helperapi.Spec) error { return errNotLinux }
func (h *Helper) RotateKey(ctx context.Context) (string, error)          { return "", errNotLinux }
func (h *Helper) Desired(ctx context.Context) (helperapi.Desired, error) {
	return helperapi.Desired{}, errNotLinux
}
func (h *Helper) Check(ctx context.Context, spec helperapi.Spec) ([]helperapi.Drift, error) {
	return nil, errNotLinux
}
func (h *Helper) Remove(ctx context.Context) error { return errNotLinux }
func (h *Helper) Facts(ctx context.Context) (helperapi.Facts, error) {
	return helperapi.Facts{}, errNotLinux
}
func (h *Helper) Restore(ctx context.Context) (helperapi.Report, bool, error) {
	return helperapi.Report{}, false, errNotLinux
}
func (h *Helper) CreateVM(ctx context.Context, req helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	return helperapi.VMInfo{}, errNotLinux
}
func (h *Helper) ListVMs(ctx context.Context) ([]helperapi.VMInfo, error) { return nil, errNotLinux }
func (h *Helper) VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error) {
	return helperapi.VMActionResult{}, errNotLinux
}
func (h *Helper) Images(ctx context.Context) ([]helperapi.Image, error) { return nil, errNotLinux }
func (h *Helper) WatchVMs(ctx context.Context) (<-chan helperapi.VMEvent, error) {
	return nil, errNotLinux
}
func (h *Helper) DryRun(ctx context.Context, req helperapi.DryRunRequest) (helperapi.DryRun, error) {
	return helperapi.DryRun{}, errNotLinux
}
