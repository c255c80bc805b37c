#!/usr/bin/env bash
# The README's MovieLens-100k run, whole: RecBole atomic files -> `tmf import recbole` -> `tmf train`
# with the defaults (no --llm: the [pretrain] stage makes the dataset's own Llama) -> every row of
# the results table on the test split. A long run (about 23 minutes on 2 cores), not a CI test.
# Usage: bash Scripts/run_movielens.sh [RECBOLE_DIR] [WORK_DIR]
#   RECBOLE_DIR defaults to ../shared/data/ml-100k (ml-100k.inter, ml-100k.item), WORK_DIR to /tmp/tmf-ml-100k.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-../shared/data/ml-100k}"
work="${2:-/tmp/tmf-ml-100k}"
swift build -c release --product tmf
tmf="$(swift build -c release --show-bin-path)/tmf"
rm -rf "$work"
mkdir -p "$work"
start=$(date +%s)
"$tmf" import recbole "$src" "$work/ml-100k"
"$tmf" train "$work/ml-100k" --out "$work/model"
for flags in "" "--rank" "--rank --graph-weight 0" "--constrained" "--baseline mbht" "--baseline mbht --rank" "--baseline popular" \
             "--baseline popular --rank" "--baseline random" "--baseline random --rank"; do
  echo "== tmf eval $work/model $flags =="
  # shellcheck disable=SC2086
  "$tmf" eval "$work/model" --quiet $flags
done
echo "== wall clock: $(( $(date +%s) - start )) s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores =="
