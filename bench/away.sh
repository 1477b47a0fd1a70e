#!/bin/sh
# Measures the offline-tolerant core through the built butter binary
# against a lab cloud of three simulated machines over real SSH, with m3
# taken away by pulling its cable: `machine list` with one machine away
# beside all up (the goal is 2 s or less), a returning machine's catch-up
# by `butter sync` beside a sync with nothing behind, and the ping loss
# across a key rotation against the ping interval; five rounds each,
# printed as median, min and max. Needs root, sshd, libvirt, qemu and
# Debian's kernel (.ci/deps). Takes two or three minutes.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkAway$' -benchtime 1x -count 1 -timeout 15m -v "$@"
