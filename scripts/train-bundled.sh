#!/usr/bin/env bash
# Train and evaluate every detector bundled in assets/detectors (hours on a 2-core CPU).
# Two queues run side by side with one thread each: the default (stage 1, stage 2: every talking-head clip trains;
# stage 3: two epochs more with colour grading), then the runs its card's leave-one-out figures come from (stages 1-2 with four talking-head clips
# held out, three times: version 7 and folds 2 and 3; the two leave-one-generator-out runs, started from version
# 7's stage 1, which saw neither generator nor those four clips), whose figures are copied into the default's card;
# and the small models (patch teacher -> tiny student, MobileNetV2 baseline). Logs in runs/<name>/stdout.log.
# Afterwards copy runs/<name>/model into assets/detectors/<name> (the default: runs/default-grade/model; see README,
# "Bundled detectors").
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

made() {  # made CONFIG [train|distill]: train (or distil) as configs/CONFIG.yaml says (its out: runs/<its base
  # name>), then evaluate
  local name; name=$(basename "$1")
  run "$name" $PY -m training ${2:-train} --config "configs/$1.yaml"
  run "$name" $PY -m training evaluate --detector "runs/$name/model" --data "$DATA"
}

default_queue() {  # the default (stage 1 on the reals only, stage 2 from it, stage 3 with colour grading), then its
  # card's leave-one-out runs (stages 1 and 2 of the recipe: the card says so)
  for name in default-stage1 default default-grade experiments/v7-stage1 experiments/v7 logo-sg2 logo-sd \
      experiments/fold2-stage1 experiments/fold2 experiments/fold3-stage1 experiments/fold3; do made $name; done
  run default-grade $PY scripts/leave-one-out.py --note "These runs are the default's stages 1 and 2 (with four \
talking-head clips or one generator held out); the default was then trained two epochs more with colour grading \
(configs/default-grade.yaml), which the runs were not: their figures are the recipe's before that last stage." \
      runs/default-grade/model runs/logo-sg2/model runs/logo-sd/model runs/v7/model runs/fold2/model runs/fold3/model
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
