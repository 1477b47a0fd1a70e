// Package holder keeps machines' SSH connections open between `butter`
// verbs, as OpenSSH's ControlPersist does: a background `butter holder`
// process listens on a unix socket only its user may open
// (Socket: $XDG_RUNTIME_DIR/butter/<hash>.sock, else a private folder
// under the temporary directory), holds one SSH connection per machine
// for a few idle minutes, and hands a verb a stream over it: the
// helper's protocol (a `helper serve` session past its hello) or a
// command's standard streams (Exec). A verb that finds no holder starts
// one (Dialer.Start) and, whatever goes wrong with it, dials the machine
// itself.
//
// The verb's request carries how to reach and trust the machine (address,
// port, user, identity, ssh config, known_hosts files); the holder keys a
// held connection by all of it and by the known_hosts and ssh config
// files' identities (size, time, inode), so a changed inventory entry or a
// changed host key never meets an old connection: the holder dials again
// (and drops the old one). Host keys are checked as on any dial (trust of
// unknown keys is never given through the holder: first contact dials
// itself). The peer of every connection must be the holder's own user
// (SO_PEERCRED on Linux, getpeereid on macOS); another is refused.
//
// The wire: the verb writes one JSON Request line; the holder answers one
// JSON Answer line. After a serve answer without error the connection is
// the protocol's raw bytes; after an exec answer it carries frames (a
// type byte, a 4-byte big-endian length, the data): 'i' standard input
// and 'c' its end from the verb; 'o' output, 'e' error output and 'x'
// the exit (its data an ExitFrame in JSON) from the holder.
package holder
