#!/usr/bin/env bash
# The paper's Table 3 ablation on the bundled shop over three training seeds: every
# --modalities row (text only; + behavior; + item (AMSA); full = + CMA) trained with seeds
# 42, 7, 3 (the defaults otherwise; each model folder runs its own pretrain/encode/graph
# stages), every model evaluated on the same test candidate sets (evaluation seed 42):
# ranking with the graph prior chosen on validation, ranking by the LLM alone
# (--graph-weight 0), and generation (HitRate@1(all), ValidRatio). Ends with one table: per
# row, the mean over the three seeds and the min-max range.
# A long run (bundled shop: 27 minutes on 2 cores of a Zen 4), not a CI test.
# Usage: bash Scripts/run_ablation.sh [WORK_DIR]
#   WORK_DIR defaults to /tmp/tmf-ablation; its M-sS folders are replaced.
set -euo pipefail
work="$(realpath -m "${1:-/tmp/tmf-ablation}")"
cd "$(dirname "$0")/.."
swift build -c release --product tmf
tmf="$(swift build -c release --show-bin-path)/tmf"
mkdir -p "$work"
start=$(date +%s)
for m in text behavior item full; do
  for s in 42 7 3; do
    out="$work/$m-s$s"
    rm -rf "$out"
    t0=$(date +%s)
    "$tmf" train --out "$out" --modalities "$m" --seed "$s" --quiet
    echo "== $m, seed $s: trained in $(( $(date +%s) - t0 )) s; ranking (graph prior), ranking (LLM alone), generation =="
    "$tmf" eval "$out" --seed 42 --rank --json --quiet | tee "$out/rank.json"
    "$tmf" eval "$out" --seed 42 --rank --graph-weight 0 --json --quiet | tee "$out/rank-llm.json"
    "$tmf" eval "$out" --seed 42 --json --quiet | tee "$out/generate.json"
  done
done
echo "== Table 3 over seeds 42, 7, 3: mean (min-max) =="
python3 - "$work" <<'EOF'
import json, os, sys
work = sys.argv[1]
rows = [("text", "text only"), ("behavior", "+ behavior"), ("item", "+ item (AMSA)"), ("full", "full (+ CMA)")]
cols = [("rank.json", "HitRate@1", "rank HR@1 (prior)"), ("rank-llm.json", "HitRate@1", "rank HR@1 (LLM alone)"),
        ("rank-llm.json", "MRR", "MRR (LLM alone)"), ("generate.json", "HitRate@1(all)", "gen HR@1(all)"),
        ("generate.json", "ValidRatio", "ValidRatio")]
seeds = [42, 7, 3]
load = lambda m, s, f: json.load(open(os.path.join(work, f"{m}-s{s}", f)))
print("| row | " + " | ".join(c[2] for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for m, name in rows:
    cells = []
    for f, key, _ in cols:
        v = [float(load(m, s, f)[key]) for s in seeds]
        cells.append(f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})")
    print(f"| {name} | " + " | ".join(cells) + " |")
print()
print("per seed: row seed: prior weight, rank HR@1 (prior), rank HR@1 (LLM alone), MRR (LLM alone), gen HR@1(all), ValidRatio")
for m, _ in rows:
    for s in seeds:
        w = json.load(open(os.path.join(work, f"{m}-s{s}", "tmf.json"))).get("graphWeight")
        print(f"{m} {s}: w={w} " + " ".join(f"{float(load(m, s, f)[key]):.4f}" for f, key, _ in cols))
EOF
echo "== wall clock: $(( $(date +%s) - start )) s on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores =="
echo "== CPU time (user, sys) of this script, then of the commands it ran (the build included): =="
times
