#!/usr/bin/env bash
# Side-by-side: the same MATCH_RECOGNIZE statement in Apache Flink 2.3 (parallelism 1,
# filesystem CSV source -> blackhole sink), in weir's matcher benchmark, and through
# `weir run` end to end (NDJSON file in, output records out).
#
#   bench/cep/flink_compare.sh [EVENTS]        (default 1,000,000 events, 100k keys)
#
# Env: WEIR_RUNS (default 3) = how many times `weir run` is timed (each printed, then the
# best); WEIR_BASELINE=/path/to/older/weir also times that binary, alternating with the
# current one (the machine is shared: alternate, never back to back).
#
# Installs apache-flink into ~/.cache/weir-flink-venv if missing (~850 MB; outside the
# repository, never a build dependency). Flink needs ~4-9 s to start a job, so the script
# also runs a scan-only job and reports rows/s with that subtracted. Report ratios: the
# machine is shared and noisy.
set -euo pipefail
EVENTS=${1:-1000000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${WEIR_FLINK_VENV:-$HOME/.cache/weir-flink-venv}
WORK=$(mktemp -d /tmp/weir-flink-cmp.XXXXXX)
if ! "$VENV/bin/python" -c 'import pyflink' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q apache-flink==2.3.0
fi
mkdir -p "$WORK/in"
python3 "$HERE/gen_events.py" --events "$EVENTS" --keys 100000 --late 0 --csv > "$WORK/in/events.csv"
cat > "$WORK/run.py" <<PY
import sys, time
from pyflink.table import EnvironmentSettings, TableEnvironment
env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
env.get_config().set("parallelism.default", "1")
env.execute_sql("""CREATE TABLE events (user_id STRING, action STRING, merchant STRING, amount DOUBLE,
  country STRING, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
  WITH ('connector'='filesystem','path'='file://$WORK/in','format'='csv')""")
env.execute_sql("CREATE TABLE sink_scan (user_id STRING) WITH ('connector'='blackhole')")
env.execute_sql("CREATE TABLE sink_mr (user_id STRING, fails BIGINT) WITH ('connector'='blackhole')")
def timed(sql):
    t = time.time(); env.execute_sql(sql).wait(); return time.time() - t
scan = timed("INSERT INTO sink_scan SELECT user_id FROM events")
mr = timed("""INSERT INTO sink_mr SELECT * FROM events MATCH_RECOGNIZE (
  PARTITION BY user_id ORDER BY ts MEASURES COUNT(F.amount) AS fails
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (F{3,} S) WITHIN INTERVAL '60' SECOND
  DEFINE F AS F.action = 'login_fail', S AS S.action = 'login_ok')""")
n = $EVENTS
print(f"flink: scan {scan:.1f} s, match {mr:.1f} s, match minus scan {mr - scan:.1f} s "
      f"=> {n / max(mr - scan, 1e-9):.0f} rows/s (pattern only), {n / mr:.0f} rows/s end to end")
open("$WORK/flink_rate", "w").write(f"{n / mr:.0f}")
PY
"$VENV/bin/python" "$WORK/run.py"
cd "$ROOT"
WEIR_BENCH_ONLY="1 rule" WEIR_BENCH_EVENTS="$EVENTS" cargo bench -p matcher --bench cep_throughput 2>/dev/null | grep '^1 rule'
# weir end to end: the same events as NDJSON through `weir run` (parse, decode, reorder,
# match, print), the same statement in weir's spelling.
cargo build -q --release -p server
python3 "$HERE/gen_events.py" --events "$EVENTS" --keys 100000 --late 0 > "$WORK/events.ndjson"
cat > "$WORK/rule.weir" <<'WEIR'
CREATE STREAM events (user_id STRING, action STRING, merchant STRING, amount FLOAT,
  country STRING, ts TIMESTAMP) WITH (event_time = 'ts', max_delay = '1 second');
CREATE RULE mr AS SELECT * FROM events MATCH_RECOGNIZE (
  PARTITION BY user_id ORDER BY ts MEASURES COUNT(F.amount) AS fails
  ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
  PATTERN (F{3,} S) WITHIN INTERVAL '60' SECOND
  DEFINE F AS F.action = 'login_fail', S AS S.action = 'login_ok');
WEIR
# Times one `weir run` over the file; prints and returns (in $rate) events/s.
time_weir() {
  local bin=$1 label=$2 start end matches
  start=$(date +%s.%N)
  matches=$("$bin" run --no-progress --rules "$WORK/rule.weir" \
    --input "events=$WORK/events.ndjson" 2>/dev/null | wc -l)
  end=$(date +%s.%N)
  rate=$(python3 -c "print(round($EVENTS/($end-$start)))")
  python3 -c "n=$EVENTS; t=$end-$start; f=$(cat "$WORK/flink_rate"); print(f'$label: {t:.2f} s end to end => {n/t:.0f} events/s ({$matches} matches), {n/t/f:.1f}x Flink end to end')"
}
best=0
base_best=0
for _ in $(seq "${WEIR_RUNS:-3}"); do
  if [ -n "${WEIR_BASELINE:-}" ]; then
    time_weir "$WEIR_BASELINE" "weir run (baseline $WEIR_BASELINE)"
    [ "$rate" -gt "$base_best" ] && base_best=$rate
  fi
  time_weir "$ROOT/target/release/weir" "weir run"
  [ "$rate" -gt "$best" ] && best=$rate
done
python3 -c "f=$(cat "$WORK/flink_rate"); print(f'best weir run: {$best} events/s = {$best/f:.1f}x Flink end to end ({f} rows/s)')"
if [ -n "${WEIR_BASELINE:-}" ]; then
  python3 -c "f=$(cat "$WORK/flink_rate"); print(f'best baseline: {$base_best} events/s = {$base_best/f:.1f}x Flink end to end')"
fi
rm -rf "$WORK"
