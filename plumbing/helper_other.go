//go:build !linux

package plumbing

import (
	"context"
	"errors"

	"github.com/butter-cloud/butter/plumbing/images"
	"github.com/butter-cloud/butter/plumbing/vm"
)

var errNotLinux = errors.New("the butter helper runs on Linux machines only")

// Helper is the machine side; it runs on Linux only.
type Helper struct{}

func New(opts Options) (*Helper, error)                                 { return nil, errNotLinux }
func (h *Helper) Close() error                                          { return nil }
func (h *Helper) PublicKey() (string, error)                            { return "", errNotLinux }
func (h *Helper) Apply(ctx context.Context, spec Spec) (Report, error)  { return Report{}, errNotLinux }
func (h *Helper) Check(ctx context.Context, spec Spec) ([]Drift, error) { return nil, errNotLinux }
func (h *Helper) Remove(ctx context.Context) error                      { return errNotLinux }
func (h *Helper) Facts(ctx context.Context) (Facts, error)              { return Facts{}, errNotLinux }
func (h *Helper) Restore(ctx context.Context) (Report, bool, error) {
	return Report{}, false, errNotLinux
}
func (h *Helper) CreateVM(ctx context.Context, req VMRequest, progress func(images.Progress)) (vm.Info, error) {
	return vm.Info{}, errNotLinux
}
func (h *Helper) ListVMs(ctx context.Context) ([]vm.Info, error) { return nil, errNotLinux }
func (h *Helper) VMAction(ctx context.Context, a VMActionRequest) (VMActionResult, error) {
	return VMActionResult{}, errNotLinux
}
func (h *Helper) Images(ctx context.Context) ([]images.Image, error)    { return nil, errNotLinux }
func (h *Helper) WatchVMs(ctx context.Context) (<-chan vm.Event, error) { return nil, errNotLinux }
