#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
# Build output goes to CARGO_TARGET_DIR (default: a cache outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/target}"
scripts/install-deps.sh
# Benchmarks first, as quick smoke runs (a real run is `cargo bench`); then
# every unit, integration and CLI test.
cargo test --locked --benches
cargo test --locked --lib --bins --tests "$@"
