#!/usr/bin/env bash
# Installs a configured-and-built Saltatory tree into a temporary prefix, then configures, builds
# and runs, against that prefix (find_package(Saltatory) from an install tree):
#   1. examples/cpp;
#   2. the README's C++ quick start: the ```cmake block after the marker
#      <!-- cpp-quickstart: CMakeLists.txt --> and the ```cpp block after
#      <!-- cpp-quickstart: quickstart.cpp -->, extracted from README.md as they stand.
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

echo "== examples/cpp against the install tree"
cmake -S "$source_dir/examples/cpp" -B "$tmp/example-build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" "${flags[@]}"
cmake --build "$tmp/example-build"
"$tmp/example-build/train_two_layer"

# Prints the fenced block (without its fences) that follows the line `<!-- cpp-quickstart: NAME -->`
# in README.md; fails if there is no such marker or the block after it is empty or unterminated.
extract() {
  awk -v marker="<!-- cpp-quickstart: $1 -->" '
    index($0, marker) == 1 { found = 1; next }
    found == 1 && /^```/ { found = 2; next }
    found == 2 && /^```/ { done = 1; exit }
    found == 2 { print; lines++ }
    END { exit (done && lines > 0) ? 0 : 1 }
  ' "$source_dir/README.md"
}

echo "== the README's C++ quick start against the install tree"
mkdir -p "$tmp/quickstart"
for name in CMakeLists.txt quickstart.cpp; do
  if ! extract "$name" >"$tmp/quickstart/$name"; then
    echo "README.md: no complete code block after <!-- cpp-quickstart: $name -->" >&2
    exit 1
  fi
done
cmake -S "$tmp/quickstart" -B "$tmp/quickstart-build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tmp/prefix" "${flags[@]}"
cmake --build "$tmp/quickstart-build"
"$tmp/quickstart-build/quickstart"
