#!/usr/bin/env bash
# Quickstart: import the real demo blocks bundled in the repo into an embedded
# store and serve the Solana JSON-RPC history API on localhost. Ctrl-C stops.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/target}"
store_dir="${CHRONICLE_DEMO_DIR:-${TMPDIR:-/tmp}/chronicle-demo}"
listen="${CHRONICLE_LISTEN:-127.0.0.1:8899}"
cargo build --quiet --bin chronicle
chronicle="$CARGO_TARGET_DIR/debug/chronicle"
"$chronicle" import --store "embedded://$store_dir" examples/blocks/*.json
cat <<MSG

Serving slots 100000000 and 154808473 on http://$listen — try:

  curl -s http://$listen -H 'content-type: application/json' \\
    -d '{"jsonrpc":"2.0","id":1,"method":"getBlock","params":[154808473,{"maxSupportedTransactionVersion":0}]}'

MSG
exec "$chronicle" serve --store "embedded://$store_dir" --listen "$listen"
