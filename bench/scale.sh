#!/bin/sh
# How the operator's verbs grow with the cloud: labs of 8, 16 and 32
# simulated machines running only the helper (no libvirtd), over real SSH:
# `machine add` of the last machine, `network create` across all, and a
# full re-apply (`sync` of every machine), medians of three, with their
# growth against 8 machines; then the helper daemon's idle memory and CPU
# with 31 peers and ten networks. Needs root and sshd (.ci/deps). Takes
# several minutes.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkScale$' -benchtime 1x -count 1 -timeout 45m "$@"
