#!/usr/bin/env bash
# Coverage-guided fuzzing of one of tmf's parsers with libFuzzer (Sources/tmf-fuzz).
# Usage: bash Scripts/fuzz.sh TARGET SECONDS [RUNS]      (TARGET all: every target in turn)
# Builds tmf-fuzz with -sanitize=fuzzer,address (Swift) and AddressSanitizer + UBSan (the C shims)
# into .build-fuzz, seeds a corpus from Fixtures/ (kept in .build-fuzz/corpus/TARGET, so runs
# continue each other), and runs for SECONDS (or RUNS inputs). A crash leaves its input in
# .build-fuzz/crashes/TARGET; replay it with `swift run tmf-fuzz TARGET FILE`. Prints the
# number of inputs run.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz.sh TARGET SECONDS [RUNS]}
seconds=${2:?usage: fuzz.sh TARGET SECONDS [RUNS]}
runs=${3:--1}
build=.build-fuzz
swift build --product tmf-fuzz --build-path "$build" -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
  -Xcc -fsanitize=fuzzer-no-link,address,undefined -Xcc -fno-sanitize-recover=undefined >&2
fuzzer="$build/debug/tmf-fuzz"
replayer_build=.build
swift build --product tmf-fuzz >&2
replayer="$replayer_build/debug/tmf-fuzz"
if [ "$target" = all ]; then
  targets=$({ "$replayer" 2>&1 || true; } | sed -n 's/.*targets: //p' | tr -d ',')
else
  targets=$target
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/Scripts/fuzz-lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in $targets; do
  corpus="$build/corpus/$t" crashes="$build/crashes/$t"
  mkdir -p "$corpus" "$crashes"
  "$replayer" "$t" --seed "$corpus"
  # Inputs that once crashed or leaked start every run, so the sanitizers replay them each time.
  if [ -d "Fixtures/fuzz/regressions/$t" ]; then cp Fixtures/fuzz/regressions/"$t"/* "$corpus"/; fi
  log=$(mktemp)
  status=0
  TMF_FUZZ_TARGET=$t "$fuzzer" "$corpus" -max_total_time="$seconds" -runs="$runs" -rss_limit_mb=4096 -timeout=10 \
    -max_len=65536 -artifact_prefix="$crashes/" -print_final_stats=1 > "$log" 2>&1 || status=$?
  count=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "fuzz $t: ${count:-0} inputs in at most $seconds s, status $status"
  if [ "$status" -ne 0 ]; then tail -40 "$log" >&2; rm -f "$log"; exit "$status"; fi
  rm -f "$log"
done
