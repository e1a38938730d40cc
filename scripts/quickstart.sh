#!/usr/bin/env bash
# Quickstart: `chronicle dev` on the demo manifests in examples/dev — a local
# node serving real mainnet blocks, three backfills into an embedded store,
# and the Solana JSON-RPC history API on http://127.0.0.1:8899 (it prints
# curl lines to try). Ctrl-C stops; running again resumes. Extra arguments
# go to `chronicle dev` (e.g. --state DIR, --once).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/target}"
cargo build --quiet --locked --bin chronicle
exec "$CARGO_TARGET_DIR/debug/chronicle" dev -f examples/dev "$@"
