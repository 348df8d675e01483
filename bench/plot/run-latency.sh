#!/usr/bin/env bash
# Measures latency against load for the plots in docs/benchmarks.md: echo at
# several rates and fan-out at several room sizes, each against a fresh
# cmd/rocket on 127.0.0.1:9185/9346 (which must be free), and the machine's
# floor under fan-out (rocket-bench loopback, no server) at the same sizes,
# then draws the PNGs into docs/.
#
#   cd bench/plot && ./run-latency.sh
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && go build -o "$tmp/rocket" ./cmd/rocket && go build -o "$tmp/rocket-bench" ./cmd/rocket-bench)
runs="$root/docs/bench-runs.jsonl"
: >"$runs"

run() {
	ROCKET_COMMAND_RATE=-1 ROCKET_LOG_LEVEL=warn "$tmp/rocket" -ws-addr 127.0.0.1:9185 -http-addr 127.0.0.1:9346 &
	local pid=$!
	sleep 0.5
	echo "rocket-bench $*" >&2
	timeout 90 "$tmp/rocket-bench" "$@" -quiet | tail -n 1 | tee -a "$runs"
	kill "$pid"
	wait "$pid" || true
}

for rate in 10000 20000 30000 40000 50000 60000 80000 100000; do
	run echo -conns 100 -duration 8s -rate "$rate"
done
run echo -conns 100 -duration 8s -rate 0
for members in 100 500 1000 2000 5000 10000; do
	run fanout -conns "$members" -duration 8s -window 1
	echo "rocket-bench loopback -conns $members" >&2
	timeout 90 "$tmp/rocket-bench" loopback -conns "$members" -duration 2s -quiet | tail -n 1 | tee -a "$runs"
done
go run . -in "$runs" -out "$root/docs"
