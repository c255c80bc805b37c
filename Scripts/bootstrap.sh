#!/usr/bin/env bash
# Installs what tmf needs on Debian (as root, or through sudo) and then either
#   train: builds tmf in release mode and runs it on the bundled defaults, or
#   test:  builds and runs the whole test suite.
# Usage: bash Scripts/bootstrap.sh train|test
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
packages=(libopenblas-dev libsentencepiece-dev libpng-dev libssl-dev pkg-config)
# Open MPI for the data-parallel tests (`mpirun -np 2 tmf …`); tmf opens libmpi at run time only
# under mpirun, so building and plain runs do not need it.
[ "$mode" = test ] && packages+=(openmpi-bin)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); else
    echo "bootstrap: run as root or install sudo (needed for apt-get)" >&2; exit 1; fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
    [ -x "$d/swift" ] && export PATH="$d:$PATH" && break
  done
fi
command -v swift >/dev/null 2>&1 || { echo "bootstrap: Swift 6 is not installed (see swift.org/install)" >&2; exit 1; }

case "$mode" in
  train)
    swift build -c release --product tmf
    bin="$(swift build -c release --show-bin-path)/tmf"
    out="${TMF_MODEL:-tmf-model}"
    # The bundled defaults: Fixtures/shop with the tiny Llama and CLIP in Fixtures/models.
    "$bin" train --out "$out" "${@:2}"
    echo "== $out on the test split (HitRate@1, ValidRatio) =="
    "$bin" eval "$out" --quiet
    echo "== the same, decoding only candidate titles (--constrained) =="
    "$bin" eval "$out" --quiet --constrained
    echo "== the same, ranking the candidates (--rank) =="
    exec "$bin" eval "$out" --quiet --rank
    ;;
  test)
    swift build --build-tests
    swift test --skip-build --disable-swift-testing "${@:2}"  # all tests are XCTest
    # Every parser's fuzz target, briefly (the long runs: README "Fuzzing"); not when only some
    # tests were asked for.
    if [ $# -le 1 ]; then bash Scripts/fuzz.sh all "${TMF_FUZZ_SECONDS:-5}"; fi
    ;;
  *)
    echo "bootstrap: unknown mode '$mode' (train or test)" >&2; exit 2 ;;
esac
