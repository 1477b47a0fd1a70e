// Package remote is the operator's side of the machines: SSH dialing that
// honours ~/.ssh/config and ssh-agent and checks host keys (unknown keys
// are trusted only when the caller says so, changed keys never), commands
// run as root through `sudo -n`, atomic sha256-checked uploads, the helper
// install, the prerequisite check, the daemon start, and the protocol
// connection to the helper (Machine). Nothing in it writes to the
// terminal: output goes to the writers callers pass.
//
// # Shipping the helper
//
// Machines run the same butter binary, built for linux/amd64 or
// linux/arm64. FindHelper looks for it, in order: an explicit file
// (HelperOptions.Binaries); the binaries embedded in a release build; the
// running executable when it is itself linux/<arch>; and the cache folder
// (~/.cache/butter/helpers/butter-linux-<arch>, or
// ~/Library/Caches/butter/helpers on macOS). A development build on Linux
// therefore installs itself on machines of its own architecture; for any
// other operator (macOS, or another architecture) use a release build.
// The helper's version is the first 16 hex digits of its binary's sha256;
// it is installed as /var/lib/butter/bin/butter-<version>.
//
// The release recipe, from the repository's root (the helpers are static,
// CGO_ENABLED=0, so they run on any Linux distribution):
//
//	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o remote/helpers/butter-linux-amd64 .
//	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -o remote/helpers/butter-linux-arm64 .
//	for t in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
//	  CGO_ENABLED=0 GOOS=${t%/*} GOARCH=${t#*/} go build -trimpath -tags butter_embed \
//	    -o dist/butter-${t%/*}-${t#*/} .
//	done
//
// The butter_embed tag embeds remote/helpers/butter-linux-{amd64,arm64}
// (git ignores them); a build without the tag embeds nothing.
//
// # The protocol
//
// Machine keeps one SSH session per machine running
// `/var/lib/butter/bin/butter-<version> helper serve` as root (under
// `[sudo -n ]sh -c`, like every command: see Client.wireLine), which
// writes "BUTTER-HELPER <protocol> <version>\n" and then relays JSON-RPC
// 2.0 to the daemon's socket. Anything before that line (login banners)
// is skipped; a different protocol or version is a *HelloError
// (ErrHelperMismatch): install the helper again. A verb that dials a
// machine itself does not ask its platform first: ConnectAny starts, in
// the same session, whichever helper this butter has (ExpectedHelpers)
// is built for it (`case "$(uname -sm)" in …`), so a machine whose helper
// runs is reached in one session. Consoles and image uploads ride further
// sessions on the same SSH connection.
package remote
