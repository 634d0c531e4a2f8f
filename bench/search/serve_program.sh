#!/usr/bin/env bash
# weir serve with 100k stored searches (+1,000 rules, 100 metrics) from bench/search's
# statement files: registration time, RSS, and adding one search (answer / applied).
set -u
WEIR=${WEIR:-/work/wt-program/target/release/weir}
SRC=/tmp/weir-search-bench/serve-100000
PARTS=$1
N=${NCHANGES:-20}
work=/tmp/program-bench/p$PARTS
rm -rf "$work"; mkdir -p "$work"
port=$((18000 + PARTS))
t0=$(date +%s.%N)
"$WEIR" serve --listen 127.0.0.1:$port --data "$work/data" --partitions "$PARTS" \
  --config "$SRC/weir.toml" --rules "$SRC"/rules/*.weir > /dev/null 2> "$work/server.log" &
pid=$!
until [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/readyz)" = 200 ]; do
  sleep 0.2
  kill -0 $pid 2>/dev/null || { echo "server exited"; tail -5 "$work/server.log"; exit 1; }
done
t1=$(date +%s.%N)
sleep 2
rss=$(awk '/VmRSS/{print $2/1024}' /proc/$pid/status)
hwm=$(awk '/VmHWM/{print $2/1024}' /proc/$pid/status)
echo "parts=$PARTS ready_s=$(echo "$t1 - $t0" | bc) rss_mb=$rss peak_mb=$hwm"
ans=(); app=()
for i in $(seq 1 $N); do
  s=$(date +%s.%N)
  pos=$(curl -s -X POST --data-binary "CREATE SEARCH added_$i AS FROM news WHERE body MATCHES '\"storm warning\" AND river$i';" \
        http://127.0.0.1:$port/v1/statements | python3 -c 'import sys,json; print(json.load(sys.stdin)["position"])')
  m=$(date +%s.%N)
  curl -s -o /dev/null "http://127.0.0.1:$port/v1/outputs?limit=1&after=$pos"
  e=$(date +%s.%N)
  ans+=($(echo "($m - $s)*1000" | bc)); app+=($(echo "($e - $s)*1000" | bc))
done
rss2=$(awk '/VmRSS/{print $2/1024}' /proc/$pid/status)
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "p50=%.1f max=%.1f", a[int((NR+1)/2)], a[NR]}'; }
echo "parts=$PARTS add_one answer_ms $(stats "${ans[@]}") applied_ms $(stats "${app[@]}") rss_after_mb=$rss2"
kill $pid; wait $pid 2>/dev/null
