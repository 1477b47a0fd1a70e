package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

// download streams url into a staged file. tlsOnly refuses redirects away
// from https, for content nothing else vouches for.
func (s *Store) download(ctx context.Context, url, name string, want expect, tlsOnly bool, progress func(helperapi.Progress)) (*staged, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := s.stallTimeout()
	timer := time.AfterFunc(stall, func() { cancel(fmt.Errorf("no data from the server for %s", stall)) })
	defer timer.Stop()

	resp, err := s.get(ctx, url, tlsOnly)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want.max = s.maxImageSize()
	if resp.ContentLength > want.max {
		return nil, fmt.Errorf("download %s: the server announces %d bytes, more than the maximum image size %d; nothing was cached", name, resp.ContentLength, want.max)
	}
	body := &stallReader{r: resp.Body, timer: timer, d: stall}
	return stage(ctx, s.dir(), body, name, helperapi.PhaseDownload, resp.ContentLength, want, progress)
}

// getSmall fetches a small file (a checksum file) over https.
func (s *Store) getSmall(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.stallTimeout())
	defer cancel()
	resp, err := s.get(ctx, url, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxSumsSize+1))
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	if len(b) > maxSumsSize {
		return nil, fmt.Errorf("download %s: larger than %d bytes; not a checksum file", url, maxSumsSize)
	}
	return b, nil
}

func (s *Store) get(ctx context.Context, url string, tlsOnly bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "butter-helper")
	resp, err := s.client(tlsOnly).Do(req)
	if err != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(err, c) {
			err = fmt.Errorf("%w (%w)", c, err)
		}
		return nil, fmt.Errorf("download %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: server answered %s", url, resp.Status)
	}
	return resp, nil
}

func (s *Store) client(tlsOnly bool) *http.Client {
	c := http.DefaultClient
	if s.Client != nil {
		c = s.Client
	}
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if tlsOnly && req.URL.Scheme != "https" {
			return fmt.Errorf("refusing redirect to %s: it leaves https and no checksum vouches for the content", req.URL)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cc
}

func (s *Store) maxImageSize() int64 {
	if s.MaxImageSize > 0 {
		return s.MaxImageSize
	}
	return DefaultMaxImageSize
}

func (s *Store) stallTimeout() time.Duration {
	if s.StallTimeout > 0 {
		return s.StallTimeout
	}
	return DefaultStallTimeout
}

// stallReader restarts a timer whenever data arrives.
type stallReader struct {
	r     io.Reader
	timer *time.Timer
	d     time.Duration
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.timer.Reset(r.d)
	}
	return n, err
}
