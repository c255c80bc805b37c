#!/usr/bin/env bash
# The README's Table 3 on a dataset (default: the bundled shop with the bundled models): the four
# ablations (--modalities text | behavior | item | full) trained with the defaults and one --seed,
# then every row on the test split, generative (HitRate@1, ValidRatio, HitRate@1(all)),
# --constrained (HitRate@1(all)), --rank --graph-weight 0 (the LLM alone) and --rank (HitRate@1,
# HitRate@3, NDCG@10, MRR; with the graph prior chosen on validation), and the three baselines.
# About 25 minutes on 2 cores for the bundled shop. Prints markdown rows.
# Usage: bash Scripts/run_table3.sh [SEED] [WORK_DIR] [DATASET]
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-42}"
work="${2:-/tmp/tmf-table3-$seed}"
data=("${@:3}")
swift build -c release --product tmf >/dev/null
tmf="$(swift build -c release --show-bin-path)/tmf"
mkdir -p "$work"
field() { sed -n "s/^$1: //p"; }
row() {  # name, model folder, extra eval flags
  local name="$1" model="$2"; shift 2
  local gen rank
  gen="$("$tmf" eval "$model" --quiet "$@")"
  rank="$("$tmf" eval "$model" --quiet --rank "$@")"
  local cons="–" alone="–"
  if [ $# -eq 0 ]; then
    cons="$("$tmf" eval "$model" --quiet --constrained | field 'HitRate@1(all)')"
    alone="$("$tmf" eval "$model" --quiet --rank --graph-weight 0 | field 'HitRate@1')"
  fi
  echo "| $name | $(echo "$gen" | field 'HitRate@1') | $(echo "$gen" | field ValidRatio) | $(echo "$gen" | field 'HitRate@1(all)') | $cons | $alone | $(echo "$rank" | field 'HitRate@1') | $(echo "$rank" | field 'HitRate@3') | $(echo "$rank" | field 'NDCG@10') | $(echo "$rank" | field MRR) |"
}
echo "| model | HitRate@1 | ValidRatio | HitRate@1(all) | constrained HitRate@1(all) | rank HitRate@1, LLM alone | rank HitRate@1 | HitRate@3 | NDCG@10 | MRR |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for m in full text behavior item; do
  out="$work/$m"
  if [ "$m" != full ]; then
    # The CLIP and MBHT stages do not depend on --modalities: reuse the full run's cache.
    mkdir -p "$out"
    cp "$work/full/item_features.safetensors" "$work/full/graph.safetensors" "$out/"
    [ -d "$work/full/llm" ] && cp -r "$work/full/llm" "$out/"
  fi
  start=$(date +%s)
  "$tmf" train "${data[@]}" --out "$out" --modalities "$m" --seed "$seed" --quiet
  row "$m ($(( $(date +%s) - start )) s)" "$out"
done
for b in mbht popular random; do row "$b" "$work/full" --baseline "$b"; done
