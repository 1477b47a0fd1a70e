//go:build !butter_embed

package remote

// embeddedHelper is nil: only release builds (-tags butter_embed) carry
// helper binaries; see doc.go.
func embeddedHelper(arch string) []byte { return nil }
