#!/bin/sh
# Measures TCP throughput across the chain (probe to probe, bridge +
# tunnel + userspace WireGuard) in one lab of three simulated machines with
# the helper's firewall (table inet butter, and the port guard, table bridge
# butter, with the probes as VMs) on and off, in six rounds of one each (5 s of iperf3
# each), and once with VXLAN learning turned on by hand; prints the
# figures and the ratios. Needs root, iperf3 and iputils-ping. All traffic
# stays inside the lab's namespaces. Takes about a minute and a half.
set -eu
cd "$(dirname "$0")/.."
exec go test ./bench -run '^$' -bench '^BenchmarkFirewall$' -benchtime 1x -count 1 "$@"
