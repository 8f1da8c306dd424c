#!/usr/bin/env bash
# Refreshes static/vendor/ from the npm registry at pinned versions and rewrites MANIFEST.json.
# usage: scripts/vendor_assets.sh   (or: make assets)
set -euo pipefail
SOCKET_IO_CLIENT=4.8.1
CHART_JS=4.4.7
SWAGGER_UI=5.35.0

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

fetch() {  # package version path-in-package target-name
  local package=$1 version=$2 inner=$3 target=$4
  local meta tarball integrity
  meta=$(cd "$work" && npm pack "$package@$version" --json 2>/dev/null)
  tarball=$(node -e 'const m=JSON.parse(process.argv[1])[0]; console.log(m.filename)' "$meta")
  integrity=$(node -e 'const m=JSON.parse(process.argv[1])[0]; console.log(m.integrity)' "$meta")
  mkdir -p "$work/$package"
  tar -xzf "$work/$tarball" -C "$work/$package"
  cp "$work/$package/package/$inner" "$out/$target"
  local sha
  sha=$(sha256sum "$out/$target" | cut -d' ' -f1)
  printf '{"file": "%s", "package": "%s", "version": "%s", "pathInPackage": "%s", "sha256": "%s", "npmIntegrity": "%s"}' \
    "$target" "$package" "$version" "$inner" "$sha" "$integrity"
}

{
  echo '['
  fetch socket.io-client "$SOCKET_IO_CLIENT" dist/socket.io.min.js socket.io.min.js
  echo ','
  fetch chart.js "$CHART_JS" dist/chart.umd.js chart.umd.js
  echo ','
  fetch swagger-ui-dist "$SWAGGER_UI" swagger-ui-bundle.js swagger-ui-bundle.js
  echo ','
  fetch swagger-ui-dist "$SWAGGER_UI" swagger-ui.css swagger-ui.css
  echo ']'
} | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), indent=2))' > "$out/MANIFEST.json"
echo "vendored into $out:"
cat "$out/MANIFEST.json"
