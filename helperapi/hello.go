package helperapi

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The operator's butter reaches the daemon through `butter helper serve`,
// run over one long-lived SSH session: serve writes a hello line, then
// relays bytes between its standard input and output and the daemon's
// socket. The hello line comes first so that whatever a login script
// prints before it is never taken for data (mutagen's agent handshake
// does the same).
const (
	// ServeMagic starts the hello line: "BUTTER-HELPER <protocol> <version>\n".
	ServeMagic = "BUTTER-HELPER"
	// ServeProtocol is the version of what flows after the hello line:
	// JSON-RPC 2.0 objects with the methods in client.go. Bump it when a
	// method changes incompatibly; the operator then reinstalls the helper.
	ServeProtocol = 2

	// DefaultSupervisePIDFile is where `butter helper supervise` records
	// its process ID.
	DefaultSupervisePIDFile = "/run/butter/supervise.pid"
)

// ServeHello is the line serve writes first, newline included.
func ServeHello(version string) string {
	return fmt.Sprintf("%s %d %s\n", ServeMagic, ServeProtocol, version)
}

// ParseServeHello reads a hello line (without its newline): ok is false if
// line is not one.
func ParseServeHello(line string) (protocol int, version string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != ServeMagic {
		return 0, "", false
	}
	p, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, "", false
	}
	return p, f[2], true
}

// VersionOf is the helper version of a butter binary: the first 16 hex
// digits of its sha256. The operator computes it over the binary it
// uploads, the helper over its own executable, so both agree without a
// version number to keep in step.
func VersionOf(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return VersionOfSum([sha256.Size]byte(h.Sum(nil))), nil
}

// VersionOfSum is the helper version of a binary whose sha256 is sum (what
// VersionOf computes, for a caller that hashed the binary already).
func VersionOfSum(sum [sha256.Size]byte) string { return hex.EncodeToString(sum[:])[:16] }

// ErrNoHello is ReadServeHello's error when the other side printed more
// than its limit without a hello line.
var ErrNoHello = errors.New("no " + ServeMagic + " hello line")

// ReadServeHello reads r up to and including a hello line, skipping
// anything before it (at most about limit bytes, returned as skipped), and
// leaves r just after it. It is the operator's side of the helper's serve
// hello. It never holds more than limit bytes plus r's buffer: a line
// without an end is cut off, not read whole.
func ReadServeHello(r *bufio.Reader, limit int) (protocol int, version string, skipped string, err error) {
	var junk, line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if err == nil {
			if p, v, ok := ParseServeHello(strings.TrimRight(string(line), "\r\n")); ok {
				return p, v, string(junk), nil
			}
			junk, line = append(junk, line...), line[:0]
		}
		if len(junk)+len(line) > limit {
			junk = append(junk, line...)
			return 0, "", string(junk[:limit]), fmt.Errorf("%w in the first %d bytes", ErrNoHello, limit)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			junk = append(junk, line...)
			return 0, "", string(junk), err
		}
	}
}

// DefaultStateDir holds the helper's key, applied spec and binaries on a
// machine.
const DefaultStateDir = "/var/lib/butter"
