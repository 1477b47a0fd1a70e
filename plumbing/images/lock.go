package images

import (
	"context"

	"github.com/butter-cloud/butter/internal/filelock"
)

// flock takes an exclusive lock on path, which other processes using the
// same store honour too, waiting until ctx ends.
func flock(ctx context.Context, path string) (unlock func(), err error) {
	h, err := filelock.Lock(ctx, path)
	if err != nil {
		return nil, err
	}
	return h.Unlock, nil
}
