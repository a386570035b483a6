#!/usr/bin/env bash
# The scale-out setup under a fixed load for a bounded time, on 127.0.0.1 only: a PostgreSQL
# server and a Redis server of the run's own, a simulated platform with both models trained,
# two API replicas, a trainer and a standby trainer, and `reelrank bench soak` sending RATE
# requests a second (30 % event writes) round the two replicas for SECONDS, then checking that
# every acknowledged event is in PostgreSQL exactly once.
#
# With FAULTS=1, one process is killed with SIGKILL at each fifth of the run and started again
# 15 s later: replica A, the trainer (the standby takes its lease), Redis, PostgreSQL.
#
#   bench/soak.sh                          # 10 minutes, no faults
#   FAULTS=1 bench/soak.sh                 # 10 minutes with the four kills
#   SECONDS_TOTAL=60 RATE=50 bench/soak.sh # briefly
#
# Needs PostgreSQL's server binaries (Debian's `postgresql`) and `redis-server`; run as root it
# runs PostgreSQL as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${SECONDS_TOTAL:-600}
RATE=${RATE:-100}
FAULTS=${FAULTS:-0}
USERS=${USERS:-2000}
ITEMS=${ITEMS:-5000}
DIR=${DIR:-/tmp/reelrank-soak}
PG_PORT=${PG_PORT:-5440}
REDIS_PORT=${REDIS_PORT:-6390}
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/reelrank
fi
BIN=$(realpath "$BIN")
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

rm -rf "$DIR"
mkdir -p "$DIR/pg" "$DIR/logs"
[ "$(id -u)" = 0 ] && chown postgres "$DIR/pg"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
  pkill -f -- "--data-dir $DIR/data serve" 2> /dev/null || true
  pkill -f "redis-server 127.0.0.1:$REDIS_PORT" 2> /dev/null || true
  as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m immediate stop > /dev/null 2>&1 || true
}
trap cleanup EXIT

start_postgres() {
  as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w \
    -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1" start > /dev/null
}
start_redis() {
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --daemonize yes \
    --logfile "$DIR/logs/redis.log" > /dev/null
}
as_postgres "$PG_BIN/initdb" -D "$DIR/pg/data" -A trust -U reelrank > /dev/null
start_postgres
start_redis
export REELRANK__STORE__DATABASE="postgres://reelrank@127.0.0.1:$PG_PORT/postgres"
export REELRANK__SERVING__SHARED_STATE__REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export RUST_LOG=${RUST_LOG:-info}
# The simulated log ends before the soak's events: measured by its clock, every simulated user
# would be idle past forget_idle_days at the first sweep.
export REELRANK__SERVING__FORGET_IDLE_DAYS=0
export REELRANK__SERVING__ONLINE__SNAPSHOT_SECS=${SNAPSHOT_SECS:-30}

echo "$(date +%T) simulating $USERS users and $ITEMS items, training both models"
"$BIN" --data-dir "$DIR/data" simulate --users "$USERS" --items "$ITEMS" --days 3 > /dev/null
"$BIN" --data-dir "$DIR/data" train retrieval --epochs 2 > /dev/null 2>&1
"$BIN" --data-dir "$DIR/data" train ranking --epochs 1 > /dev/null 2>&1

# name -> port, role
declare -A PORT=([a]=18081 [b]=18082 [trainer]=18083 [standby]=18084)
declare -A ROLE=([a]=api [b]=api [trainer]=trainer [standby]=trainer)
declare -A PID
start() {
  "$BIN" --data-dir "$DIR/data" serve --role "${ROLE[$1]}" --addr "127.0.0.1:${PORT[$1]}" \
    >> "$DIR/logs/$1.log" 2>&1 &
  PID[$1]=$!
  PIDS+=("$!")
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:${PORT[$1]}/readyz" > /dev/null && return
    sleep 0.2
  done
  echo "$1 did not become ready; see $DIR/logs/$1.log" >&2
  exit 1
}
for name in trainer a b standby; do start "$name"; done
echo "$(date +%T) serving: A and B (api), trainer, standby; soak of ${SECONDS_TOTAL} s at $RATE/s (faults: $FAULTS)"

faults() {
  local step=$((SECONDS_TOTAL / 5))
  sleep "$step"
  echo "$(date +%T) t=$((step)) s: kill -9 replica A"; kill -9 "${PID[a]}"
  sleep 15; start a; echo "$(date +%T) replica A back"
  sleep $((step - 15))
  echo "$(date +%T) t=$((2 * step)) s: kill -9 the trainer"; kill -9 "${PID[trainer]}"
  sleep 15; start trainer; echo "$(date +%T) the old trainer back (standing by)"
  sleep $((step - 15))
  echo "$(date +%T) t=$((3 * step)) s: kill -9 Redis"; pkill -9 -f "redis-server 127.0.0.1:$REDIS_PORT"
  sleep 15; start_redis; echo "$(date +%T) Redis back, empty"
  sleep $((step - 15))
  echo "$(date +%T) t=$((4 * step)) s: kill -9 PostgreSQL"; kill -9 "$(head -1 "$DIR/pg/data/postmaster.pid")"
  sleep 15
  until start_postgres 2> /dev/null; do sleep 1; done
  echo "$(date +%T) PostgreSQL back"
}
if [ "$FAULTS" = 1 ]; then
  faults > "$DIR/logs/faults.log" 2>&1 &
  PIDS+=("$!")
fi

RUST_LOG=warn "$BIN" --data-dir "$DIR/data" bench soak --url "http://127.0.0.1:${PORT[a]}" --url "http://127.0.0.1:${PORT[b]}" \
  --rate "$RATE" --seconds "$SECONDS_TOTAL" --users "$USERS" --items "$ITEMS" \
  --pid "${PID[a]}" --pid "${PID[b]}" --pid "${PID[trainer]}" --pid "${PID[standby]}" | tee "$DIR/soak.out"
[ "$FAULTS" = 1 ] && cat "$DIR/logs/faults.log"
for name in a b trainer standby; do
  echo "$name: $(curl -s "http://127.0.0.1:${PORT[$name]}/readyz")"
done
