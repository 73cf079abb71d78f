#!/usr/bin/env bash
# Centralised vs FedAvg vs FedProx (two mu) on the same non-IID split (configs/federated.yaml), with
# the same total budget of local steps: 4 rounds x 3 clients x 10 steps = 120 optimiser steps of 8
# real faces (+8 pseudo-fakes); the centralised run is one client holding all the clients' faces,
# 4 rounds x 30 steps. The same starting model, the same server evaluation. Figures: docs/federated.md.
# About 10 minutes a run on 2 cores once the face crops are cached.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-configs/federated.yaml}
run() {  # run NAME ARGS...
  local name=$1; shift
  [ -f "runs/$name/model/metrics.json" ] && { echo "runs/$name: done already"; return; }
  echo "[$(date +%T)] $name: $*"
  nice -n 10 "$PY" -m training federated --config "$CONFIG" --out "runs/$name" --name "$name" "$@" \
    > "runs/$name.log" 2>&1
}
mkdir -p runs
run fed-central --partition pooled --local-steps 30 --mu 0
run fed-fedavg --mu 0
run fed-fedprox001 --mu 0.01
run fed-fedprox1 --mu 1.0
"$PY" scripts/federated-table.py runs/fed-central runs/fed-fedavg runs/fed-fedprox001 runs/fed-fedprox1
