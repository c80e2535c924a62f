#!/usr/bin/env bash
# The cluster smoke test (README, "Running on several machines"; CI runs it):
#
#   1. make cluster-up's stack, fresh, in .run/cluster-smoke: three
#      nats-servers (deploy/nats/cluster, the dev identities), streams R3,
#      two instances of every service under the supervisor;
#   2. a burst of orders (jetsaga load, as the reader);
#   3. mid-burst, kill -9 the nats-server leading the ORDERS stream and the
#      second instance of every service (the supervisor restarts the
#      instances; the script brings the node back a few seconds later);
#   4. the burst finishes: every saga terminal, no order refused;
#   5. jetsaga check: every invariant holds;
#   6. make cluster-down (also when a step fails).
#
# Needs bin/ built (make build; make cluster-smoke does both). Ports as for
# make cluster-up (JETSAGA_CLUSTER_*_PORT): a cluster already running on them
# makes it stop at once. SMOKE_ORDERS (300) and SMOKE_RATE (30/s) size the
# burst; SMOKE_KEEP=1 keeps the run folder for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

orders=${SMOKE_ORDERS:-300}
rate=${SMOKE_RATE:-30}
run=$PWD/.run/cluster-smoke
monitor=${JETSAGA_CLUSTER_MONITOR_PORT:-18222}
started=$(date +%s)

step() { printf '[smoke %3ds] %s\n' $(($(date +%s) - started)) "$*"; }
fail() { step "FAIL: $*"; exit 1; }

# wait_for DESCRIPTION SECONDS COMMAND...: run COMMAND until it succeeds, at
# most SECONDS long.
wait_for() {
	local what=$1 limit=$2
	shift 2
	local deadline=$(($(date +%s) + limit))
	until "$@"; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${limit}s"
		sleep 0.2
	done
}

cleanup() {
	local rc=$?
	[ -n "${load_pid:-}" ] && kill "$load_pid" 2>/dev/null || true
	step "cluster down"
	bin/jetsaga down --cluster --run-dir "$run" || true
	if [ "$rc" -ne 0 ]; then
		for f in "$run"/logs/*.log; do
			[ -f "$f" ] || continue
			echo "---- last lines of $f"
			tail -n 15 "$f"
		done
	fi
	[ "${SMOKE_KEEP:-}" = 1 ] || [ "$rc" -ne 0 ] || rm -rf "$run"
	step "finished: exit $rc in $(($(date +%s) - started))s"
}
trap cleanup EXIT

[ -x bin/jetsaga ] || fail "bin/jetsaga is not built: make build"
rm -rf "$run"
mkdir -p "$(dirname "$run")" # a fresh checkout has no .run yet

step "cluster up (make cluster-up's stack in $run)"
bin/jetsaga up --cluster --run-dir "$run" >"$run.up.log" 2>&1 || { cat "$run.up.log"; fail "cluster up"; }
grep -v '^20' "$run.up.log" | head -n 12
rm -f "$run.up.log"
# The CLI as the reader: NATS_URL (three nodes), the reader's seed,
# DATABASE_URL, ORDER_URL, …
# shellcheck disable=SC1091
. "$run/cli.env"

step "burst: $orders orders at $rate/s"
bin/jetsaga load --orders "$orders" --rate "$rate" --drain 90s --run-dir "$run" --json \
	>"$run/load.json" 2>"$run/load.progress" &
load_pid=$!

# Mid-burst: the load prints its first progress line after 5s.
progressed() { [ "$(grep -c 'sent' "$run/load.progress" 2>/dev/null)" -ge "$1" ]; }
wait_for "the burst's first progress" 60 progressed 1

# The node that leads ORDERS (its monitoring endpoint says), else n1.
leader=$(curl -fsS "http://127.0.0.1:$monitor/jsz?streams=true" 2>/dev/null | tr -d ' \n' |
	grep -o '"name":"ORDERS"[^]]*' | grep -o '"leader":"n[0-9]"' | grep -o '[0-9]' | head -n 1 || true)
node=${leader:-1}
kill -9 "$(cat "$run/pids/nats-$node.pid")"
if [ -n "$leader" ]; then
	step "kill -9 nats-server n$node (the ORDERS stream's leader)"
else
	step "kill -9 nats-server n$node (the ORDERS leader is unknown: no curl?)"
fi
for s in order inventory payment readmodel; do
	pid=$(cat "$run/pids/$s-2.pid")
	kill -9 "$pid"
	step "kill -9 $s-2 (pid $pid)"
done

# A few seconds on two nodes, then the node comes back: up on a running
# stack starts what went away and waits until every instance is ready again.
wait_for "the burst's second progress" 60 progressed 2
bin/jetsaga up --cluster --run-dir "$run" >/dev/null 2>&1 || fail "bring n$node back"
step "nats-server n$node is back; every instance ready (the supervisor restarted the killed ones)"
grep -c 'restarting' "$run/logs/supervisor.log" | xargs -I{} echo "  supervisor restarts: {}"

wait "$load_pid" || fail "jetsaga load exited $?"
load_pid=
not_terminal=$(grep -o '"not_terminal": *[0-9]*' "$run/load.json" | grep -o '[0-9]*$')
errors=$(grep -o '"errors": *[0-9]*' "$run/load.json" | grep -o '[0-9]*$')
completed=$(grep -o '"completed": *[0-9]*' "$run/load.json" | grep -o '[0-9]*$')
step "burst finished: $completed sagas ended, $not_terminal not terminal, $errors orders refused"
[ "$not_terminal" = 0 ] || fail "$not_terminal sagas did not end"
[ "$errors" = 0 ] || fail "$errors orders were not accepted"

step "jetsaga check (as the reader)"
bin/jetsaga check --quiesce 60s --deadline 0 || fail "jetsaga check"
step "PASS"
