#!/bin/sh
# Measures TCP throughput in one lab of three simulated machines: probe to
# probe across the whole chain, mesh address to mesh address across
# WireGuard alone, and underlay to underlay bare; prints the figures and the
# ratios chain/wg0 and wg0/bare. Needs root, iperf3 and iputils-ping. All
# traffic stays inside the lab's namespaces. Takes about half a minute.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkChain$' -benchtime 1x -count 1 "$@"
