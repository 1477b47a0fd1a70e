package remote

import (
	"bytes"
	"io"

	"github.com/butter-cloud/butter/internal/printable"
)

// transcript writes a protocol session's messages to w, one line each:
// "HOST > {…}" for what the operator sent, "HOST < {…}" for what it
// received (escaped for a terminal). A message is split from the next at
// its newline (the stream puts one after each), however the reads cut it.
type transcript struct {
	w    io.Writer
	host string
	dir  string
	buf  []byte
}

// maxTranscriptLine bounds what a line waits for its newline; a longer
// one is written in pieces of this size.
const maxTranscriptLine = 1 << 20

func (t *transcript) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 && len(t.buf) < maxTranscriptLine {
			break
		}
		if i < 0 {
			i = maxTranscriptLine
		}
		t.emit(t.buf[:i])
		t.buf = t.buf[min(i+1, len(t.buf)):]
	}
	if len(t.buf) == 0 {
		t.buf = nil
	}
	return len(p), nil
}

func (t *transcript) emit(line []byte) {
	// One Write per line: several sessions may share w.
	_, _ = io.WriteString(t.w, t.host+" "+t.dir+" "+printable.String(string(line))+"\n")
}
