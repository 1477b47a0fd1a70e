#!/bin/sh
# Times VM creation on one simulated machine with its own libvirtd and
# helper daemon, the image cache warm: five creates of the tiny guest
# (Debian's kernel and a busybox initramfs, TCG), one at a time; prints
# the median, min and max from the create call to the VM running, to the
# guest's first console line and to its ready line, and the ratio of the
# medians. The goal is 1 s or less to running. Needs root, libvirt, qemu
# and Debian's kernel (.ci/deps). Takes about half a minute.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkVMCreate$' -benchtime 1x -count 1 "$@"
