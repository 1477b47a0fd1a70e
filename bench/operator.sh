#!/bin/sh
# Times the operator's verbs through the core (package cloud) against a
# lab cloud of three simulated machines reached over real SSH (lab "opb"
# on 10.254.0.0/24, so it never meets another lab), with the helper
# uploaded from a fresh build of butter: adding a machine fresh (helper
# upload, daemon start, two peers updated), creating a network across the
# three machines (the goal is 2 s or less), and creating a tiny VM until it
# runs; five rounds each, printed as median, min and max. Needs root,
# sshd, libvirt, qemu and Debian's kernel (.ci/deps). Takes a minute or two.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkOperator$' -benchtime 1x -count 1 -timeout 15m "$@"
