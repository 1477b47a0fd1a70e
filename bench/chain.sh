#!/bin/sh
# Measures TCP throughput in one lab of three simulated machines: probe to
# probe across the whole chain and mesh address to mesh address across
# WireGuard alone (a first run each, then five rounds of both in turn),
# the same with the WireGuard device's offloads off, and underlay to
# underlay bare (5 s of iperf3 each); then the chain again on a lab whose
# helpers use a tun, where they use a tap. Prints the medians, the
# packets per second and bytes per packet WireGuard carried, the helper
# daemons' CPU, and the ratios between them. Needs root, iperf3 and
# iputils-ping; ethtool for the offloads-off run (skipped without it). All
# traffic stays inside the lab's namespaces. Takes about two minutes.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkChain$' -benchtime 1x -count 1 "$@"
