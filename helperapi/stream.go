package helperapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// MaxMessageSize bounds one JSON-RPC message on the wire, either way. The
// largest real message is a spec or a desired state of a big cloud: tens
// of KiB. A message that runs past the bound is refused and its connection
// closed, so a peer that sends a never-ending object costs at most this
// much memory.
const MaxMessageSize = 16 << 20

// ErrMessageTooLarge is why a stream stopped reading a message larger
// than its bound.
var ErrMessageTooLarge = errors.New("message too large")

// Stream carries JSON-RPC 2.0 objects, one after another without a header
// (jsonrpc2's plain object stream), over rwc, reading at most max bytes
// per message. It is the stream both the operator's client and the
// helper's server use.
type Stream struct {
	rwc io.ReadWriteCloser
	max int64
	r   *boundedReader
	dec *json.Decoder

	wmu sync.Mutex
	enc *json.Encoder

	emu sync.Mutex
	err error
}

// NewStream is a Stream over rwc with messages of at most max bytes
// (MaxMessageSize when max <= 0).
func NewStream(rwc io.ReadWriteCloser, max int64) *Stream {
	if max <= 0 {
		max = MaxMessageSize
	}
	r := &boundedReader{r: rwc}
	return &Stream{rwc: rwc, max: max, r: r, dec: json.NewDecoder(r), enc: json.NewEncoder(rwc)}
}

// ReadObject decodes the next message into v. A message larger than the
// bound, or one that is not JSON, is an error that ends the stream (the
// jsonrpc2 connection closes on it); Err tells it afterwards.
func (s *Stream) ReadObject(v any) error {
	// The message starts at the decoder's offset; what the decoder
	// buffered beyond it was read already and counts against the bound.
	s.r.limit = s.dec.InputOffset() + s.max
	err := s.dec.Decode(v)
	switch {
	case errors.Is(err, ErrMessageTooLarge):
		err = fmt.Errorf("a message longer than %d bytes: %w", s.max, ErrMessageTooLarge)
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		if errors.As(err, &se) || errors.As(err, &te) {
			err = fmt.Errorf("a malformed message: %w", err)
		}
	}
	if err != nil {
		s.emu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.emu.Unlock()
	}
	return err
}

// WriteObject encodes v as the next message.
func (s *Stream) WriteObject(v any) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.enc.Encode(v)
}

// Close closes rwc.
func (s *Stream) Close() error { return s.rwc.Close() }

// Err is why reading stopped: nil while it has not, io.EOF when the other
// side hung up.
func (s *Stream) Err() error {
	s.emu.Lock()
	defer s.emu.Unlock()
	return s.err
}

// boundedReader reads r up to an offset limit, then fails with
// ErrMessageTooLarge.
type boundedReader struct {
	r     io.Reader
	n     int64 // bytes read so far
	limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	left := b.limit - b.n
	if left <= 0 {
		return 0, ErrMessageTooLarge
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}
