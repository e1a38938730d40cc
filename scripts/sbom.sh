#!/usr/bin/env bash
# The release binary's SBOM (CycloneDX 1.3 JSON): every crate compiled into
# `chronicle` for x86_64 Linux, with its version, licence and purl, written to
# ${CARGO_TARGET_DIR}/sbom/chronicle.cdx.json. cargo-cyclonedx describes the
# binary from `cargo metadata`, whose features are unified with the
# dev-dependencies' (proptest would be listed); the list is then cut to what
# `cargo tree -e normal` resolves for the release build, and checked to hold
# every crate of it.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/target}"
tools="${XDG_CACHE_HOME:-$HOME/.cache}/chronicle/tools"
triple=x86_64-unknown-linux-gnu
out="$target_dir/sbom"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f chronicle_bin.cdx.json kubectl-chronicle_bin.cdx.json' EXIT

"$tools/bin/cargo-cyclonedx" cyclonedx --format json --describe binaries --no-build-deps --target "$triple" -q
mv chronicle_bin.cdx.json "$work/full.cdx.json"
cargo tree --locked -e normal --target "$triple" --prefix none --format '{p}' -p chronicle > "$work/tree.txt"

python3 - "$work/full.cdx.json" "$work/tree.txt" "$out/chronicle.cdx.json" <<'PY'
import json, sys
full, tree, out = sys.argv[1:]
built = set()
for line in open(tree):
    name, version = line.split()[:2]
    built.add((name, version.lstrip("v")))
sbom = json.load(open(full))
root = sbom["metadata"]["component"]
built.discard((root["name"], root["version"]))
keep = [c for c in sbom["components"] if (c["name"], c["version"]) in built]
listed = {(c["name"], c["version"]) for c in keep}
missing = sorted(built - listed)
if missing:
    sys.exit(f"sbom: crates the binary builds that the SBOM lacks: {missing[:10]}")
refs = {c["bom-ref"] for c in keep} | {root["bom-ref"]}
sbom["components"] = keep
sbom["dependencies"] = [
    {"ref": d["ref"], "dependsOn": [r for r in d.get("dependsOn", []) if r in refs]}
    for d in sbom.get("dependencies", []) if d["ref"] in refs
]
json.dump(sbom, open(out, "w"), indent=1)
print(f"sbom: {out}: {len(keep)} crates ({len(json.load(open(full))['components']) - len(keep)} test-only ones left out)")
PY
