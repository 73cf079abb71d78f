#!/usr/bin/env bash
# Bundle a trained, evaluated model folder: copy it into assets/detectors/NAME, build its ONNX float
# and int8 models, and keep its float-vs-int8 audit (on its own validation faces) beside it. Options after
# NAME go to `forensics quantize` (the default's shipped int8 build: --mode static --max-delta 0.008).
#   scripts/bundle-detector.sh runs/default/model default --mode static --max-delta 0.008
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ $# -ge 2 ] || { echo "usage: $0 MODEL_FOLDER NAME [quantize options]" >&2; exit 2; }
src=$1 name=$2
shift 2
dest=assets/detectors/$name
[ -f "$src/metrics.json" ] || { echo "$src: evaluate it first (python -m training evaluate --detector $src)" >&2; exit 1; }
tmp=$(mktemp -d "assets/detectors/.$name.XXXX")
cp -r "$src"/. "$tmp"/
rm -rf "$tmp/audit" "$tmp"/*.tmp "$tmp"/*.onnx "$tmp/onnx.json"
rm -rf "$dest"
mv "$tmp" "$dest"
$PY -m forensics quantize --detector "$dest" "$@"
$PY -m forensics audit --detector "$dest" --out "runs/audit/$name" --bundle --limit 800 --max-abs-delta 0.02 \
  || echo "audit tolerance FAILED for $name (kept; see runs/audit/$name/audit.html)" >&2
du -sh "$dest"
