#!/usr/bin/env bash
# Llama-2-7B-shape speed beside llama.cpp, bf16 weights, on this machine (a long run, not a CI test).
# Usage: bash Scripts/bench_7b.sh [TMF_BINARY] [WORK_DIR]
#   TMF_BINARY defaults to .build/release/tmf (build it first: swift build -c release --product tmf),
#   WORK_DIR to /tmp/tmf-bench-7b. Environment: THREADS (2), REPEATS (2), PREFILL (256), DECODE (16),
#   SHAPE (7b; 110m or tiny for a quick run of the same steps, see make_llama_checkpoint.py), DTYPE
#   (bf16; or f16, f32: the checkpoint's storage, the GGUF's and tmf's --dtype), PREPARE_ONLY (set:
#   make the folder, llama.cpp and the GGUF, then stop; Scripts/bench_llama_peers.sh uses it),
#   PYTHON (/work/venv/bin/python: numpy for the checkpoint; torch, safetensors, sentencepiece for
#   llama.cpp's converter), PEERS (../shared/peers: build-llama-cpp.sh and its source tarball),
#   TMF_ARGS (the options after `tmf bench llama --llm DIR`; default --dtype bf16 --prefill PREFILL
#   --decode DECODE --lora-batch 1x256 --threads THREADS --repeats REPEATS: the LoRA step r 8 on q,v, batch 1 × 256).
# Steps, each skipped when its output exists:
#   1. WORK_DIR/llama7b-bf16: random-init Llama-2-7B bf16 folder (Scripts/make_llama_checkpoint.py;
#      13.5 GB on disk, 47 MB resident, 3.3 minutes here);
#   2. WORK_DIR/llamacpp: llama.cpp built from the peers tarball (never copied into this repo; 4 min);
#   3. WORK_DIR/llama7b-bf16.gguf: the folder converted with --outtype bf16 only (13.5 GB more, 3 min,
#      5.3 GB peak RSS, most of it the mapped safetensors).
# Then it runs llama-bench (-p PREFILL -n DECODE -r REPEATS) and `tmf bench llama` on the same weights, each
# under /usr/bin/time -v, keeps the raw outputs in WORK_DIR/logs-SHAPE/, and prints a table of prefill,
# decode and LoRA-step tok/s with each run's peak RSS. llama.cpp maps the GGUF file, so its RSS
# counts the 13.5 GB of weights pages it touched; tmf's counts what it allocated.
# Needs about 28 GB free disk and, for llama.cpp, about 14 GB of memory. Measured here on an idle
# machine (2 threads): llama.cpp 7B bf16 prefill 7.4 tok/s, decode 0.81 tok/s, 12.7 GiB peak RSS,
# 2 min 46 s. Run it on an otherwise idle machine: with a core taken by another process, llama.cpp's
# 2 threads spin on each other and its figures fall 2-4x (0.19 tok/s decode in one such run).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
tmf=${1:-.build/release/tmf}
work=${2:-/tmp/tmf-bench-7b}
threads=${THREADS:-2}
repeats=${REPEATS:-2}
prefill=${PREFILL:-256}
decode=${DECODE:-16}
shape=${SHAPE:-7b}
dtype=${DTYPE:-bf16}
python=${PYTHON:-/work/venv/bin/python}
peers=${PEERS:-$repo/../shared/peers}
model="$work/llama$shape-$dtype"
llamacpp="$work/llamacpp"
gguf="$work/llama$shape-$dtype.gguf"
logs="$work/logs-$shape"
tmf_args=${TMF_ARGS:---dtype $dtype --prefill $prefill --decode $decode --lora-batch 1x256 --threads $threads --repeats $repeats}

[ -x "$tmf" ] || { echo "bench_7b: no tmf binary at $tmf (swift build -c release --product tmf)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_7b: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
mkdir -p "$work" "$logs"
if [ ! -f "$model/config.json" ]; then  # config.json is written last: without it the folder is incomplete
  echo "== writing $model =="
  /usr/bin/time -v "$python" Scripts/make_llama_checkpoint.py --shape "$shape" --dtype "$dtype" --out "$model" --force \
    >"$logs/make_checkpoint.log" 2>&1 || { cat "$logs/make_checkpoint.log" >&2; exit 1; }
  grep -e '^[^[:space:]]' -e 'Elapsed' -e 'Maximum resident' "$logs/make_checkpoint.log" | grep -v '^Command being timed'

fi

bench="$llamacpp/build/bin/llama-bench"
if [ ! -x "$bench" ]; then
  echo "== building llama.cpp in $llamacpp =="
  bash "$peers/build-llama-cpp.sh" "$llamacpp" >"$logs/build-llama-cpp.log" 2>&1 \
    || { echo "bench_7b: llama.cpp build failed, see $logs/build-llama-cpp.log" >&2; exit 1; }
fi

if [ ! -f "$gguf" ]; then
  echo "== converting to $gguf =="
  PYTHONPATH="$llamacpp/gguf-py" /usr/bin/time -v "$python" "$llamacpp/convert_hf_to_gguf.py" "$model" \
    --outtype "$dtype" --outfile "$gguf.tmp" >"$logs/convert.log" 2>&1 \
    || { echo "bench_7b: conversion failed, see $logs/convert.log" >&2; exit 1; }
  mv "$gguf.tmp" "$gguf"
  grep -e 'Elapsed' -e 'Maximum resident' "$logs/convert.log"
fi

[ -n "${PREPARE_ONLY:-}" ] && exit 0

peak_rss() {  # peak RSS in GB from a /usr/bin/time -v log
  awk -F: '/Maximum resident set size/ { printf "%.2f GiB", $2 / 1048576 }' "$1"
}

echo "== llama.cpp llama-bench $dtype, $threads threads =="
/usr/bin/time -v "$bench" -m "$gguf" -p "$prefill" -n "$decode" -t "$threads" -r "$repeats" >"$logs/llama-bench.log" 2>&1 \
  || echo "bench_7b: llama-bench failed, see $logs/llama-bench.log" >&2
grep '^|' "$logs/llama-bench.log" || true
# The last column of llama-bench's markdown rows is "t/s" as "mean ± sd".
ll_pp=$(awk -F'|' -v p="$prefill" 'NF > 3 && $(NF-2) ~ "pp" p " *$" { gsub(/^ +| +$/, "", $(NF-1)); gsub(/±/, "+-", $(NF-1)); print $(NF-1) }' "$logs/llama-bench.log")
ll_tg=$(awk -F'|' -v n="$decode" 'NF > 3 && $(NF-2) ~ "tg" n " *$" { gsub(/^ +| +$/, "", $(NF-1)); gsub(/±/, "+-", $(NF-1)); print $(NF-1) }' "$logs/llama-bench.log")

echo "== tmf bench llama --llm $model $tmf_args =="
# shellcheck disable=SC2086
/usr/bin/time -v "$tmf" bench llama --llm "$model" $tmf_args >"$logs/tmf-bench.log" 2>&1 \
  || echo "bench_7b: tmf bench llama failed, see $logs/tmf-bench.log" >&2
grep -v '^\s' "$logs/tmf-bench.log" | grep -v '^\(Command being timed\|Exit status\)' || true
# `tmf bench llama` prints a "== prefill/decode/LoRA ... ==" header, then "tmf: N tok/s ...".
tmf_tok() {
  awk -v section="$1" '/^== / { s = $2 } s == section && /^tmf: / { v = $2; exit } END { print (v == "" ? "?" : v) }' \
    "$logs/tmf-bench.log"
}

printf '\n%-26s | %-18s | %-18s | %-14s | %s\n' "$shape $dtype, $threads threads" "prefill $prefill tok/s" "decode tok/s" "LoRA step tok/s" "peak RSS"
printf '%-26s | %-18s | %-18s | %-14s | %s\n' "llama.cpp llama-bench" "${ll_pp:-?}" "${ll_tg:-?}" "-" "$(peak_rss "$logs/llama-bench.log")"
printf '%-26s | %-18s | %-18s | %-14s | %s\n' "tmf bench llama" "$(tmf_tok prefill)" "$(tmf_tok decode)" "$(tmf_tok LoRA)" "$(peak_rss "$logs/tmf-bench.log")"
if grep -qw avx512_bf16 /proc/cpuinfo; then simd="AVX-512 with BF16"
elif grep -qw avx512f /proc/cpuinfo; then simd="AVX-512 without BF16"
else simd="no AVX-512"; fi
echo "(raw outputs in $logs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $simd;" \
  "tmf's OpenBLAS kernels: $(grep -m1 '^OpenBLAS kernels' "$logs/tmf-bench.log" | cut -d: -f2 | xargs))"
