#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Unit tests beside the code, behaviour tests in tests/ driving the real binary
# against the shared test data in ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ehrlift-target}"
if [ ! -d ../shared/data ]; then
  echo "error: ../shared/data (the shared test corpus) is missing beside the repository" >&2
  exit 2
fi
cargo test --workspace --locked "$@"
