#!/usr/bin/env bash
# The test command: installs what the tests need, then runs every test.
# Build output goes to CARGO_TARGET_DIR (default: a cache outside the clone).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/target}"
scripts/install-deps.sh
# The e2e suite's API server: kube-apiserver + etcd from their Go modules, built once into a cache.
e2e/envtest/envtest.sh build
# Licences, bans and sources of what enters the binary (deny.toml), offline
# (the crates fetched first: the check reads their manifests and licence files).
cargo fetch --locked --quiet
"${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/tools/bin/cargo-deny" --offline --locked --exclude-dev \
  check licenses bans sources
# The release binary's SBOM, checked to list every crate the binary builds.
scripts/sbom.sh
# Benchmarks first, as quick smoke runs (a real run is `cargo bench`); then
# every unit, integration and CLI test.
cargo test --locked --benches
cargo test --locked --lib --bins --tests "$@"
