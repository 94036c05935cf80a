#!/usr/bin/env bash
# Installs a configured-and-built Saltatory tree into a temporary prefix, then configures, builds
# and runs examples/cpp against that prefix (find_package(Saltatory) from an install tree).
# Usage: install_example.sh <build dir> <source dir> [sanitizers of that build, e.g. address,undefined]
set -euo pipefail
build_dir=${1:?usage: install_example.sh <build dir> <source dir>}
source_dir=${2:?usage: install_example.sh <build dir> <source dir>}
sanitize=${3:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/saltatory-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
flags=()  # an instrumented library needs an instrumented program
if [[ -n $sanitize ]]; then
  flags=(-DCMAKE_CXX_FLAGS="-fsanitize=$sanitize" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$sanitize")
fi

cmake --install "$build_dir" --prefix "$tmp/prefix"
cmake -S "$source_dir/examples/cpp" -B "$tmp/example-build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" "${flags[@]}"
cmake --build "$tmp/example-build"
"$tmp/example-build/train_two_layer"
