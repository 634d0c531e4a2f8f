#!/usr/bin/env bash
# Search benchmark: weir vs Lucene Monitor (same queries and documents, same run) and, on
# the term-only subset, mokaccino. Usage: bench/search/run.sh [DATA_DIR]
# Sizes: weir at 10k / 100k / 1M stored queries; Lucene Monitor at 10k and 100k (fewer
# documents: it is ~100x slower); mokaccino at 100k and 1M term-only queries.
# Env: NDOCS, LDOCS10K, LDOCS100K (documents per run), LUCENE_ONLY=1 (side by side only).
# Needs root (Lucene Monitor is built from Debian's lucene8 source by
# /work/shared/peers/lucene-monitor.sh into ~/.cache/lucene-monitor) and javac.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${1:-/tmp/weir-search-bench}
NDOCS=${NDOCS:-20000}
LDOCS10K=${LDOCS10K:-2000}
LDOCS100K=${LDOCS100K:-300}
(cd "$here" && cargo build --release -q)
(cd "$here/moka" && cargo build --release -q)
[[ -f $data/queries.tsv ]] || "$here/target/release/gen" "$data" 1000000 "$NDOCS"
peers=${PEERS_SCRIPT:-/work/shared/peers/lucene-monitor.sh}
cp=""
if [[ -x $peers || -f $peers ]]; then cp=$(bash "$peers" "$HOME/.cache/lucene-monitor" | tail -1); fi
if [[ -n $cp ]]; then
  mkdir -p "$data/java" && javac -nowarn -d "$data/java" -cp "$cp" "$here/MonitorBench.java"
fi
weir="$here/target/release/weir"
lucene() { java -Xmx8g -cp "$cp:$data/java" MonitorBench "$data" "$@"; }
ratio() { # weir-line lucene-line → ratio of docs_per_cpu_s
  local w l; w=$(sed -n 's/.*docs_per_cpu_s=\([0-9.]*\).*/\1/p' <<<"$1"); l=$(sed -n 's/.*docs_per_cpu_s=\([0-9.]*\).*/\1/p' <<<"$2")
  echo "ratio weir/lucene-monitor (docs per CPU-second): $(python3 -c "print(round($w/$l,1))")"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in 10000 100000; do
  docs=$([[ $n == 10000 ]] && echo "$LDOCS10K" || echo "$LDOCS100K")
  w=$("$weir" "$data" "$n" all "$docs"); echo "$w"
  if [[ -n $cp ]]; then l=$(lucene "$n" all "$docs"); echo "$l"; ratio "$w" "$l"; fi
done
# LUCENE_ONLY=1: stop after the side-by-side runs above.
[[ ${LUCENE_ONLY:-0} == 1 ]] && exit 0
"$weir" "$data" 10000
"$weir" "$data" 100000
"$weir" "$data" 1000000
for n in 100000 1000000; do
  "$weir" "$data" "$n" terms 5000
  "$here/moka/target/release/weir-search-bench-moka" "$data" "$n" 5000
done
