#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls it).
# Unit tests beside the code, behaviour tests in tests/ driving the real binary
# against the shared test data in ../shared/data, the local PostgreSQL and MariaDB,
# and S3/KMS from moto's server.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ehrlift-target}"
if [ ! -d ../shared/data ]; then
  echo "error: ../shared/data (the shared test corpus) is missing beside the repository" >&2
  exit 2
fi
# S3 and KMS come from moto's server on 127.0.0.1 (a venv under ~/.cache on first use);
# without it the S3 tests skip with a notice, and under CI=true they fail.
source scripts/moto.sh
moto_start
# infra/ and the Dockerfile parsed and checked for the guarantees infra/README.md states
# (a venv under ~/.cache on first use; without it a notice, and under CI=true a failure).
python3 scripts/check_infra.py
cargo test --workspace --locked "$@"
