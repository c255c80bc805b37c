#!/usr/bin/env bash
# 1 process x 2 threads against 2 MPI ranks x 1 thread on this machine, on the bundled shop and
# model: the [graph] stage's wall time (MBHT, data-parallel by batches) and one LoRA step's time
# (the cost of the all-reduce and of splitting each batch).
# Usage: bash Scripts/bench_mpi.sh WORK_DIR [STEPS]   (TMF: the binary, default .build/release/tmf)
# Prints the [graph] stage's seconds, the median step time of each (rank 0's wall clock per step,
# from metrics.jsonl) and the bytes all-reduced per step (the trainable parameters, Float32).
set -euo pipefail
work=${1:?usage: bench_mpi.sh WORK_DIR [STEPS]}
steps=${2:-40}
tmf=${TMF:-.build/release/tmf}
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # fails in containers
mkdir -p "$work"
args=(train Fixtures/shop --steps "$steps" --batch-size 8 --graph-weight 0 --eval-limit 8 --quiet)
rm -rf "$work/one" "$work/two"
mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
"$tmf" "${args[@]}" --out "$work/one" --threads 2 --stage encode
"$tmf" "${args[@]}" --out "$work/two" --threads 2 --stage encode
seconds() { local t0=$EPOCHREALTIME; "$@"; awk "BEGIN { print $EPOCHREALTIME - $t0 }"; }
g1=$(seconds "$tmf" "${args[@]}" --out "$work/one" --threads 2 --stage graph)
g2=$(seconds "${mpi[@]}" "$tmf" "${args[@]}" --out "$work/two" --threads 1 --stage graph)
printf '[graph] stage (MBHT, %s epochs): 1 rank x 2 threads %.1f s; 2 ranks x 1 thread %.1f s\n' \
  "$(grep -c '"stage":"graph"' "$work/one/metrics.jsonl")" "$g1" "$g2"
"$tmf" "${args[@]}" --out "$work/one" --threads 2
"${mpi[@]}" "$tmf" "${args[@]}" --out "$work/two" --threads 1
python3 - "$work" <<'PY'
import json, statistics, struct, sys
work = sys.argv[1]
def step_seconds(folder):
    out = []
    for line in open(f"{folder}/metrics.jsonl"):
        r = json.loads(line)
        if r.get("stage") == "llm" and "loss" in r:
            out.append(r["answer_tokens"] / r["tokens_per_s"])
    return out[5:]  # the first steps warm up
def trainable_bytes(folder):
    total = 0
    for name in ("adapter_model.safetensors", "fusion.safetensors"):
        with open(f"{folder}/{name}", "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        total += sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
    return total
a, b = statistics.median(step_seconds(f"{work}/one")), statistics.median(step_seconds(f"{work}/two"))
print(f"1 rank x 2 threads: {a * 1000:.1f} ms/step; 2 ranks x 1 thread: {b * 1000:.1f} ms/step; ratio {a / b:.2f}")
print(f"all-reduced per step: {trainable_bytes(f'{work}/one') / 1e6:.2f} MB (trainable parameters, Float32)")
PY
