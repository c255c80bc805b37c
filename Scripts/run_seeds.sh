#!/usr/bin/env bash
# A dataset's quality table, as the "beat the baselines" issue asks for it: full TMF
# trained with three seeds (42, 7, 3; the defaults otherwise), every model and
# baseline evaluated on the same test candidate sets and prompt templates (evaluation seed 42),
# MBHT per seed (its training follows the seed), on a `tmf synth` shop its ceiling (--baseline oracle),
# every row also split by "target in history" / "new item" (Scripts/split_predictions.py).
# A long run (bundled shop: about 6 minutes on 2 cores of a Zen 4), not a CI test.
# Usage: bash Scripts/run_seeds.sh [WORK_DIR] [DATASET_DIR]
#   WORK_DIR defaults to /tmp/tmf-seeds, DATASET_DIR to the bundled shop (Fixtures/shop). For
#   MovieLens-100k: tmf import recbole ../shared/data/ml-100k /tmp/ml-100k, then
#   bash Scripts/run_seeds.sh /tmp/ml-seeds /tmp/ml-100k
set -euo pipefail
work="$(realpath -m "${1:-/tmp/tmf-seeds}")"
data="$(realpath "${2:-$(dirname "$0")/../Fixtures/shop}")"
cd "$(dirname "$0")/.."
swift build -c release --product tmf
tmf="$(swift build -c release --show-bin-path)/tmf"
mkdir -p "$work"
start=$(date +%s)
files=()
for s in 42 7 3; do
  rm -rf "$work/s$s"
  "$tmf" train "$data" --out "$work/s$s" --seed "$s" --quiet
  echo "== seed $s: ranking (graph prior), ranking (LLM alone), generation =="
  "$tmf" eval "$work/s$s" --seed 42 --rank --quiet --predictions "$work/s$s/rank.jsonl"
  "$tmf" eval "$work/s$s" --seed 42 --rank --graph-weight 0 --quiet --predictions "$work/s$s/rank-llm.jsonl"
  "$tmf" eval "$work/s$s" --seed 42 --quiet --predictions "$work/s$s/generate.jsonl"
  echo "== seed $s: MBHT (ranking) =="
  "$tmf" eval "$work/s$s" --seed 42 --baseline mbht --rank --quiet --predictions "$work/s$s/mbht.jsonl"
  files+=("$work/s$s/rank.jsonl" "$work/s$s/rank-llm.jsonl" "$work/s$s/generate.jsonl" "$work/s$s/mbht.jsonl")
done
for b in popular random; do
  echo "== baseline $b (ranking) =="
  "$tmf" eval "$work/s42" --seed 42 --baseline "$b" --rank --quiet --predictions "$work/$b.jsonl"
  files+=("$work/$b.jsonl")
done
echo "== the shop's ceiling (--baseline oracle: a tmf synth shop's own process, seed 1) =="
if "$tmf" eval --data "$data" --seed 42 --baseline oracle --rank --quiet --predictions "$work/oracle.jsonl"; then
  files+=("$work/oracle.jsonl")
fi
echo "== HitRate@1 by target =="
python3 Scripts/split_predictions.py "$data" "${files[@]}"
echo "== wall clock: $(( $(date +%s) - start )) s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores =="
