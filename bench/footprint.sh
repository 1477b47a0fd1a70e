#!/bin/sh
# The helper daemon at rest with kernel WireGuard, on a real machine of the
# realmachines tier (Debian's kernel under qemu, TCG): its resident memory
# and CPU share with the machine's own spec, then with the spec grown to
# 31 peers and ten networks on all of them (310 gretap ports), side by
# side in one run, with the apply's time and the processes that took the
# CPU meanwhile; then the machine's own spec is applied again. Runs the
# tier's set-up (three machines booted, added, a network) and this step
# only. Needs root, qemu and what .ci/deps installs. Takes about 15
# minutes on two cores.
set -eu
cd "$(dirname "$0")/.."
BUTTER_BENCH_FOOTPRINT=1 CI=true exec go test ./realmachines -run '^TestRealMachines$/^idle' -count 1 -v -timeout 45m "$@"
