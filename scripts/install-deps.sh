#!/usr/bin/env bash
# Installs the real components the test suite starts, when they are missing:
# PostgreSQL and Redis from Debian's packages. The Bigtable emulator ships with
# the Google Cloud CLI (component `bigtable-emulator`, Debian package
# google-cloud-cli-bigtable-emulator) and the `cbt` CLI (google-cloud-cli-cbt);
# they come from Google's apt repository, so they are only checked here.
set -euo pipefail

missing=()
have_postgres() { command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }
have_postgres || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# agave's solana-storage-bigtable (a dev-dependency: the interoperability test
# and the read benchmark) links OpenSSL.
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
# The non-Rust client test runs @solana/web3.js from npm.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The chain-metrics sink's tests write to VictoriaMetrics' InfluxDB v2 write
# API; the shipped alert rules are checked with Prometheus' promtool.
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The envtest API server (e2e/envtest) is built with Go >= 1.26 from the Go module proxy.
if ! go version 2>/dev/null | grep -Eq 'go1\.(2[6-9]|[3-9][0-9])'; then
  echo "install-deps: Go 1.26 or newer is needed to build the envtest API server (e2e/envtest); found: $(go version 2>&1)" >&2
  exit 1
fi

sdk_root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null || true)
if ! command -v cbtemulator >/dev/null 2>&1 && [ ! -x "${CBTEMULATOR:-${sdk_root:-/nonexistent}/platform/bigtable-emulator/cbtemulator}" ]; then
  echo "install-deps: the Bigtable emulator is missing: install google-cloud-cli-bigtable-emulator (or 'gcloud components install bigtable-emulator'), or set CBTEMULATOR" >&2
  exit 1
fi
if ! command -v cbt >/dev/null 2>&1; then
  echo "install-deps: the cbt CLI is missing: install google-cloud-cli-cbt (or 'gcloud components install cbt')" >&2
  exit 1
fi

# The chart tests render charts/chronicle with a real Helm (built once from
# its Go module into the cache, like the envtest binaries) and check the
# manifests against Kubernetes' OpenAPI schemas with PyPI kubernetes-validate.
helm_version=v3.22.0
helm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/helm/$helm_version"
if [ ! -x "$helm_dir/helm" ]; then
  echo "install-deps: building helm $helm_version into $helm_dir (once)" >&2
  mkdir -p "$helm_dir"
  (cd /tmp && CGO_ENABLED=0 GOBIN="$helm_dir" go install -trimpath "helm.sh/helm/v3/cmd/helm@$helm_version")
fi
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "install-deps: installing kubernetes-validate from PyPI" >&2
  python3 -m pip install -q kubernetes-validate==1.37.0 2>/dev/null \
    || python3 -m pip install -q --break-system-packages kubernetes-validate==1.37.0
fi

# The lake tests read the Parquet partitions back with PyPI pyarrow (an
# independent reader of what the lake wrote).
if ! python3 -c 'import pyarrow' 2>/dev/null; then
  echo "install-deps: installing pyarrow from PyPI" >&2
  python3 -m pip install -q pyarrow==21.0.0 2>/dev/null \
    || python3 -m pip install -q --break-system-packages pyarrow==21.0.0
fi

# The export tests load the datasets with Hugging Face `datasets` (JSONL
# shards are zstd: `zstandard`) and decode token files with `tiktoken`,
# given its ranks offline (tests/export.rs copies tiktoken-rs's).
if ! python3 -c 'import datasets, tiktoken, zstandard' 2>/dev/null; then
  echo "install-deps: installing datasets, tiktoken and zstandard from PyPI" >&2
  packages=(datasets==5.0.1 tiktoken==0.14.0 zstandard==0.25.0)
  python3 -m pip install -q "${packages[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${packages[@]}"
fi

# An export tokenized with a Hugging Face tokenizer.json is checked against
# the Python `tokenizers` encoding the same file (tests/export.rs).
if ! python3 -c 'import tokenizers' 2>/dev/null; then
  echo "install-deps: installing tokenizers from PyPI" >&2
  python3 -m pip install -q tokenizers==0.23.3 2>/dev/null \
    || python3 -m pip install -q --break-system-packages tokenizers==0.23.3
fi

# A Python production client reads `serve` in tests/python_client.rs: PyPI
# `solana` (solana-py, on `solders`).
if ! python3 -c 'import solana.rpc.async_api, solders' 2>/dev/null; then
  echo "install-deps: installing solana-py from PyPI" >&2
  python3 -m pip install -q solana==0.41.0 2>/dev/null \
    || python3 -m pip install -q --break-system-packages solana==0.41.0
fi

# The BigQuery tests run PyPI bqemulator (DuckDB underneath). It refuses to
# start without DuckDB's spatial extension and cannot download it offline:
# it is copied from the duckdb-extension-spatial package into DuckDB's cache.
if ! command -v bqemulator >/dev/null 2>&1; then
  echo "install-deps: installing bqemulator from PyPI" >&2
  packages=(bqemulator==1.4.0 duckdb==1.5.5 duckdb-extension-spatial==1.5.5 numpy)
  python3 -m pip install -q "${packages[@]}" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "${packages[@]}"
  hash -r
fi
spatial_dir="$HOME/.duckdb/extensions/v1.5.5/linux_amd64"
if [ ! -f "$spatial_dir/spatial.duckdb_extension" ]; then
  spatial=$(python3 -c 'import duckdb_extension_spatial, os; print(os.path.join(os.path.dirname(duckdb_extension_spatial.__file__), "extensions/v1.5.5/spatial.duckdb_extension"))')
  mkdir -p "$spatial_dir" && cp "$spatial" "$spatial_dir/"
fi
if ! command -v bqemulator >/dev/null 2>&1; then
  echo "install-deps: bqemulator is not on PATH after installing it (pip's script directory?)" >&2
  exit 1
fi

# The supply-chain check (deny.toml) runs cargo-deny, built once from
# crates.io into a cache outside the clone, as the build cache is.
tools="${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/tools"
if ! "$tools/bin/cargo-deny" --version 2>/dev/null | grep -q '^cargo-deny 0\.20\.2$'; then
  echo "install-deps: building cargo-deny 0.20.2 from crates.io" >&2
  (unset CARGO_TARGET_DIR; cargo install -q --locked cargo-deny@0.20.2 --root "$tools")
fi
# The release binary's SBOM (scripts/sbom.sh) comes from cargo-cyclonedx, built the same way.
if ! "$tools/bin/cargo-cyclonedx" cyclonedx --version 2>/dev/null | grep -q ' 0\.5\.9$'; then
  echo "install-deps: building cargo-cyclonedx 0.5.9 from crates.io" >&2
  (unset CARGO_TARGET_DIR; cargo install -q --locked cargo-cyclonedx@0.5.9 --root "$tools")
fi
