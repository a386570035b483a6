#!/usr/bin/env bash
# End-to-end latency of GET /v1/recommend under load, on 127.0.0.1 only, bounded in time.
#
# A simulated platform with ITEMS items (default 1,000,000, all in the two-tower index) and
# USERS users, both models trained on its log, `reelrank serve` on a free loopback port, then
# wrk with CONNECTIONS connections for DURATION seconds, each request for a random user:
# sources, filters, 500 candidates ranked by the Wide&Deep value model, diversity re-ranking,
# impressions logged. The load generator shares the machine's cores with the server.
#
#   bench/serve.sh                    # builds the data once into $DIR/base (about 8 minutes), then measures
#   CONNECTIONS=8 DURATION=20 bench/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${ITEMS:-1000000}
USERS=${USERS:-20000}
DAYS=${DAYS:-2}
DIR=${DIR:-/tmp/reelrank-bench-$ITEMS}
CONNECTIONS=${CONNECTIONS:-16}
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
command -v wrk > /dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

# BIN=path/to/another/build compares builds side by side on the same data.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/reelrank
fi
export RUST_LOG=warn
# The simulated log ends long before the bench's live impressions: by the log's clock every
# simulated user would be idle for forget_idle_days at the first tick and be forgotten, and the
# feeds measured would be cold-start ones.
export REELRANK__SERVING__FORGET_IDLE_DAYS=${REELRANK__SERVING__FORGET_IDLE_DAYS:-0}
BASE="$DIR/base"
if [ ! -f "$BASE/ready" ]; then
  rm -rf "$BASE"
  "$BIN" --data-dir "$BASE" simulate --items "$ITEMS" --users "$USERS" --days "$DAYS"
  "$BIN" --data-dir "$BASE" train retrieval --epochs 2
  "$BIN" --data-dir "$BASE" train ranking --epochs 1
  touch "$BASE/ready"
fi
# Every run starts from the same state: served impressions would otherwise pile up in the log
# and make each run's users more "seen" than the last's.
RUN="$DIR/run"
rm -rf "$RUN"
cp -a "$BASE" "$RUN"

LOG=$(mktemp)
"$BIN" --data-dir "$RUN" serve --addr 127.0.0.1:0 > "$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2> /dev/null; rm -f "$LOG"; rm -rf "$RUN"' EXIT
URL=""
for _ in $(seq 1 600); do
  URL=$(sed -n 's/^listening on //p' "$LOG")
  if [ -n "$URL" ] && curl -sf "$URL/readyz" > /dev/null; then break; fi
  sleep 1
done
[ -n "$URL" ] || { cat "$LOG" >&2; exit 1; }
curl -sf "$URL/v1/recommend?user_id=u1&n=20" > /dev/null
echo "serving $ITEMS items at $URL; warming up ${WARMUP} s"
USERS=$USERS wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s bench/recommend.lua "$URL" > /dev/null
echo "measuring: $CONNECTIONS connections, ${DURATION} s"
USERS=$USERS wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/recommend.lua "$URL" | tail -1
