//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package images

import "context"

// flock is a no-op here: only the in-process lock guards the store.
func flock(ctx context.Context, path string) (unlock func(), err error) {
	return func() {}, nil
}
