#!/bin/sh
# Times the operator's verbs through the built butter binary with the
# connection holder and without it, in the same run, against a lab cloud of
# four simulated machines over real SSH: `machine list`, `network create`
# across the four, and `vm create` of a tiny guest beside OpenSSH's raw
# `ssh MACHINE virsh create` of the same domain; five rounds each, the
# order alternating. Needs root, sshd, libvirt, qemu, ssh and Debian's
# kernel (.ci/deps). Takes a minute or two.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkHolder$' -benchtime 1x -count 1 -timeout 15m "$@"
