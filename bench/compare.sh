#!/bin/sh
# compare.sh runs the load tool against two builds of cmd/rocket on this
# machine, in the same run, with the machine's floor first in each round:
#
#   bench/compare.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
#
# Each round runs, for each build in turn (the order swapped every other
# round): echo over 100 connections, fan-out to 2,000 members (memory
# broker), and direct whispers between two nodes on a redis-server of its
# own. Every result is one JSON line on standard output, prefixed with the
# round, the build and the scenario; everything listens on 127.0.0.1 only.
# ROCKET_BENCH (default: rocket-bench on PATH) is the load tool.
set -eu
before=$1
after=$2
rounds=${3:-2}
bench=${ROCKET_BENCH:-rocket-bench}
dir=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM

waitport() {
	i=0
	until curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 100 ] || { echo "node on :$1 did not start" >&2; exit 1; }
		sleep 0.1
	done
}

# node BINARY WSPORT HTTPPORT [REDIS_URL] starts a node in the background.
node() {
	ROCKET_WS_ADDR=127.0.0.1:$2 ROCKET_HTTP_ADDR=127.0.0.1:$3 ROCKET_COMMAND_RATE=-1 \
		ROCKET_REDIS_URL=${4:-} ROCKET_LOG_LEVEL=warn "$1" >"$dir/node-$2.log" 2>&1 &
	pids="$pids $!"
	last=$!
	waitport "$3"
}

stopnode() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

result() { tail -n 1 | sed "s/^/$1 /"; }

run() { # run ROUND NAME BINARY
	node "$3" 29185 29346
	n=$last
	$bench echo -conns 100 -duration 5s -rate 0 -window 8 -url ws://127.0.0.1:29185/ -metrics http://127.0.0.1:29346/metrics | result "$1 $2 echo"
	$bench fanout -conns 2000 -duration 5s -window 1 -url ws://127.0.0.1:29185/ -metrics http://127.0.0.1:29346/metrics | result "$1 $2 fanout"
	stopnode "$n"

	port=$((30000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
	r=$!
	pids="$pids $r"
	i=0
	until redis-cli -p "$port" ping >/dev/null 2>&1; do
		i=$((i + 1)); [ $i -lt 100 ] || { echo "redis-server did not start" >&2; exit 1; }
		sleep 0.1
	done
	node "$3" 29185 29346 "redis://127.0.0.1:$port"
	a=$last
	node "$3" 29186 29347 "redis://127.0.0.1:$port"
	b=$last
	$bench direct -conns 400 -duration 6s -rate 0 -window 16 -url ws://127.0.0.1:29185/ -url ws://127.0.0.1:29186/ \
		-metrics http://127.0.0.1:29346/metrics -metrics http://127.0.0.1:29347/metrics | result "$1 $2 direct"
	stopnode "$a"
	stopnode "$b"
	stopnode "$r"
}

for round in $(seq 1 "$rounds"); do
	$bench loopback -conns 400 -duration 3s | result "$round floor loopback"
	if [ $((round % 2)) -eq 1 ]; then
		run "$round" before "$before"
		run "$round" after "$after"
	else
		run "$round" after "$after"
		run "$round" before "$before"
	fi
done
