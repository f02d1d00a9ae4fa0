#!/usr/bin/env bash
# Copies the contract (proto/ at the repository root) into the R package
# (r-package/inst/proto), which must ship identical copies: the R package reads
# them at run time. `tools/sync-proto.sh --check` changes nothing and exits 1
# when the copies differ (tests/testthat/test-utils_proto.R checks the same).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/../proto"
dst="$here/inst/proto"
if [ ! -d "$src" ]; then
  echo "sync-proto: no contract folder at $src" >&2
  exit 2
fi
if [ "${1:-}" = "--check" ]; then
  if diff -r "$src" "$dst" >/dev/null 2>&1; then
    exit 0
  fi
  echo "sync-proto: r-package/inst/proto differs from proto/; run r-package/tools/sync-proto.sh" >&2
  diff -r "$src" "$dst" >&2 || true
  exit 1
fi
rm -rf "$dst"
mkdir -p "$dst"
cp -R "$src"/. "$dst"/
echo "sync-proto: copied $(find "$dst" -name '*.proto' | wc -l) .proto files into r-package/inst/proto"
