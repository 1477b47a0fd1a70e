// Package cli is the operator's `butter` command line, built on cobra: the
// verbs for machines, networks, VMs and labs, each of which parses its flags
// and arguments, calls the core (package cloud) and prints the result, and
// with no verb the dashboard (package tui). Run executes one command line
// and returns the exit code: 0, 1 when the work failed, 2 for a usage error.
// The machine side, `butter helper`, is main's to add through Options, so
// that this package does not import the helper's code (package plumbing).
package cli
