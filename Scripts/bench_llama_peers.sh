#!/usr/bin/env bash
# tmf against llama.cpp on the same Llama weights, bf16 and f32, measured alternately in one run
# (these machines are shared and noisy: alternating keeps both sides under the same load).
# Usage: bash Scripts/bench_llama_peers.sh WORK_DIR [ROUNDS]
#   WORK_DIR gets (through Scripts/bench_7b.sh with SHAPE=110m PREPARE_ONLY=1, skipped when
#   present) llama110m-bf16/ and llama110m-f32/ (random-init Hugging Face folders), their GGUF
#   conversions and llama.cpp built from the peers. TMF (default .build/release/tmf), THREADS (2),
#   PYTHON and PEERS as for bench_7b.sh.
# Each round runs, in this order: tmf bf16, llama.cpp bf16, tmf f32, llama.cpp f32 (prefill 256,
# decode 64; tmf's LoRA step too). It prints every round's tok/s and, at the end, the medians
# and tmf's ratio to llama.cpp for each figure.
set -euo pipefail
work=${1:?usage: bench_llama_peers.sh WORK_DIR [ROUNDS]}
rounds=${2:-3}
tmf=${TMF:-.build/release/tmf}
threads=${THREADS:-2}
bench="$work/llamacpp/build/bin/llama-bench"
for t in bf16 f32; do SHAPE=110m DTYPE=$t PREPARE_ONLY=1 bash "$(dirname "$0")/bench_7b.sh" "$tmf" "$work"; done
out=$(mktemp -d)
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for r in $(seq "$rounds"); do
  for t in bf16 f32; do
    "$tmf" bench llama --llm "$work/llama110m-$t" --dtype "$t" --threads "$threads" --repeats 3 > "$out/tmf-$t-$r.txt"
    awk '/^== prefill/ { getline; print $2 }' "$out/tmf-$t-$r.txt" >> "$out/tmf-$t-prefill"
    awk '/^== decode/ { getline; print $2 }' "$out/tmf-$t-$r.txt" >> "$out/tmf-$t-decode"
    awk '/^== LoRA/ { getline; print $2 }' "$out/tmf-$t-$r.txt" >> "$out/tmf-$t-lora"
    "$bench" -m "$work/llama110m-$t.gguf" -p 256 -n 64 -t "$threads" -r 3 -o jsonl > "$out/cpp-$t-$r.jsonl"
    python3 -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print("prefill" if r["n_prompt"] else "decode", r["avg_ts"])' "$out/cpp-$t-$r.jsonl" > "$out/cpp-$t-$r.txt"
    awk '$1 == "prefill" { print $2 }' "$out/cpp-$t-$r.txt" >> "$out/cpp-$t-prefill"
    awk '$1 == "decode" { print $2 }' "$out/cpp-$t-$r.txt" >> "$out/cpp-$t-decode"
    echo "round $r $t: tmf prefill $(tail -1 "$out/tmf-$t-prefill") decode $(tail -1 "$out/tmf-$t-decode") LoRA $(tail -1 "$out/tmf-$t-lora");" \
         "llama.cpp prefill $(tail -1 "$out/cpp-$t-prefill") decode $(tail -1 "$out/cpp-$t-decode") tok/s"
  done
done
echo "medians of $rounds rounds (tok/s), tmf / llama.cpp:"
for t in bf16 f32; do
  for f in prefill decode; do
    a=$(median < "$out/tmf-$t-$f"); b=$(median < "$out/cpp-$t-$f")
    awk -v t="$t" -v f="$f" -v a="$a" -v b="$b" 'BEGIN { printf "  %-4s %-7s tmf %7.1f  llama.cpp %7.1f  ratio %.2f\n", t, f, a, b, a / b }'
  done
  echo "  $t LoRA step (batch 4x128): tmf $(median < "$out/tmf-$t-lora") tok/s"
done
echo "raw outputs: $out"
