#!/usr/bin/env bash
# Train and evaluate every detector bundled in assets/detectors (hours on a 2-core CPU).
# Two queues run side by side with one thread each: the default (stage 1, stage 2, then the two
# leave-one-generator-out runs started from stage 1) and the small
# models (patch teacher -> tiny student, MobileNetV2 baseline). Logs in runs/<name>/stdout.log.
# Afterwards copy runs/<name>/model into assets/detectors/<name> (see README, "Bundled detectors").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data/labels.csv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

run() {  # run NAME COMMAND...: log to runs/NAME/stdout.log
  local name=$1; shift
  mkdir -p "runs/$name"
  echo "[$(date +%T)] $name: $*" | tee -a "runs/$name/stdout.log"
  "$@" >>"runs/$name/stdout.log" 2>&1
}

made() {  # made NAME [train|distill]: train (or distil) as configs/NAME.yaml says, then evaluate
  run $1 $PY -m training ${2:-train} --config configs/$1.yaml
  run $1 $PY -m training evaluate --detector runs/$1/model --data "$DATA"
}

default_queue() {  # stage 1 (self-blended reals only), the default from it, the leave-one-generator-out runs from it
  for name in default-stage1 default logo-sg2 logo-sd; do made $name; done
}

small_queue() {
  made patch
  made patch-tiny distill
  made mobilenetv2
}

case "${1:-all}" in
  default) default_queue ;;
  small) small_queue ;;
  all) default_queue & small_queue & wait ;;
  *) echo "usage: $0 [all|default|small]" >&2; exit 2 ;;
esac
