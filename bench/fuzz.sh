#!/usr/bin/env bash
# Fuzzes what reelrank parses from outside, each target for SECONDS (default 600), one after the
# other, and prints executions, coverage and crashes per target. Needs the nightly toolchain and
# cargo-fuzz (`rustup toolchain install nightly; cargo install cargo-fuzz`). A crash leaves its
# input in fuzz/artifacts/TARGET/; turn it into a regression test beside the parser.
#
#   bench/fuzz.sh            # 10 minutes per target
#   SECONDS_PER_TARGET=30 bench/fuzz.sh event_batch csv_import
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-600}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(event_batch item_batch user_batch csv_import movielens_import)

# Seeds: a small simulated platform as CSV, and the same records as JSON bodies.
SEEDS=$(mktemp -d)
trap 'rm -rf "$SEEDS"' EXIT
# BIN=path/to/reelrank seeds from an existing build.
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/reelrank
fi
"$BIN" --data-dir "$SEEDS/data" simulate --users 5 --items 20 --days 1 --out "$SEEDS/csv" > /dev/null
seed() { mkdir -p "fuzz/corpus/$1"; cat > "fuzz/corpus/$1/$2"; }
{ printf '\0'; head -5 "$SEEDS/csv/items.csv"; } | seed csv_import items
{ printf '\1'; head -5 "$SEEDS/csv/users.csv"; } | seed csv_import users
{ printf '\2'; head -5 "$SEEDS/csv/events.csv"; } | seed csv_import events
printf '[{"event_id":"e1","user_id":"u1","item_id":"i1","kind":"watch","value":31000,"ts":"2026-03-01T10:00:00Z","request_id":"r1","context":{"device":"ios","hour":10}}]' | seed event_batch array
printf '{"user_id":"u1","item_id":"i1","kind":"like","ts":1767225600000}\n{"user_id":"u2","item_id":"i1","kind":"rate","value":4,"ts":1767225600000}\n' | seed event_batch ndjson
printf '[{"item_id":"ep-1","title":"Heiress","category":"micro_drama","tags":["palace"],"creator_id":"c1","duration_s":95,"series_id":"s1","episode":1,"regions":["CN"],"age_rating":12,"available_until":"2027-01-01T00:00:00Z"}]' | seed item_batch array
printf '[{"user_id":"u1","region":"CN","language":"zh","birth_year":2001,"attributes":{"gender":"f","age":23,"likes":["food","travel"]},"personalization":false}]' | seed user_batch array
printf '\0%s\0\0%s\0\0%s' $'1\t10\t4\t881250949\n2\t10\t3\t881250950\n' $'1|24|M|technician|85711\n' \
  $'10|Cafe Society (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0\n' | seed movielens_import ml100k
printf '\1%s\0\0%s\0\0%s' $'userId,movieId,rating,timestamp\n1,10,4.5,881250949\n' \
  $'movieId,title,genres\n10,"Heat (1995)",Action|Crime\n' $'userId,movieId,tag,timestamp\n1,10,heist,881250949\n' | seed movielens_import mllatest

cargo +nightly fuzz build -O
printf '%-18s %12s %10s %10s %s\n' target executions coverage features crashes
for target in "${TARGETS[@]}"; do
  log="fuzz/$target.log"
  status=0
  cargo +nightly fuzz run -O "$target" -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
    -rss_limit_mb=2048 > "$log" 2>&1 || status=$?
  runs=$(grep -oP 'stat::number_of_executed_units:\s*\K\d+' "$log" | tail -1)
  cov=$(grep -oP 'cov: \K\d+' "$log" | tail -1)
  ft=$(grep -oP 'ft: \K\d+' "$log" | tail -1)
  crashes=$(ls "fuzz/artifacts/$target" 2>/dev/null | wc -l)
  printf '%-18s %12s %10s %10s %s\n' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$crashes$([ $status -ne 0 ] && echo " (exit $status, see $log)")"
done
