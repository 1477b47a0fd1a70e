package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The log records every dial and command with its duration and exit
// status, and none of the secrets around: the private key file, what went
// to a command's standard input, the environment.
func TestLogCommands(t *testing.T) {
	f := newFixture(t)
	const envSecret = "env-secret-4b1d6c"
	t.Setenv("BUTTER_TEST_TOKEN", envSecret)
	var buf bytes.Buffer
	f.opts.Log = slog.New(slog.NewTextHandler(&buf, nil))
	c := f.client(t)
	ctx := context.Background()
	if _, err := c.Output(ctx, false, "echo hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx, Cmd{Line: "exit 3"}); err == nil {
		t.Fatal("exit 3 succeeded")
	}
	stdinSecret := "stdin-secret-9f2e71"
	if err := c.Run(ctx, Cmd{Line: "cat >/dev/null", Stdin: strings.NewReader(stdinSecret)}); err != nil {
		t.Fatal(err)
	}
	body := []byte("upload-secret-77aa01")
	sum := sha256.Sum256(body)
	dest := filepath.Join(t.TempDir(), "up")
	if err := c.Upload(ctx, Upload{Path: dest, Mode: 0o600, SHA256: hex.EncodeToString(sum[:]), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	log := buf.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`msg="ssh dial" host=127\.0\.0\.1:\d+ addr=127\.0\.0\.1:\d+ user=root took=\d`),
		regexp.MustCompile(`msg="remote command" host=\S+ command="echo hello" root=false took=\S+ exit=0\n`),
		regexp.MustCompile(`msg="remote command failed" host=\S+ command="exit 3" root=false took=\S+ exit=3 error=`),
		regexp.MustCompile(`msg="remote command" host=\S+ command="cat >/dev/null" .* exit=0\n`),
	} {
		if !want.MatchString(log) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
	key, err := os.ReadFile(filepath.Join(f.home, ".ssh", "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range append(strings.Fields(string(key)), envSecret, stdinSecret, string(body)) {
		if len(secret) > 8 && strings.Contains(log, secret) {
			t.Errorf("log holds secret %q:\n%s", secret, log)
		}
	}
}
