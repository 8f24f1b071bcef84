#!/usr/bin/env bash
# EnCodec's LSTM on one H200 in one device call (about 7 minutes): the scan's two gradients
# (recompute, autodiff) timed (bench_lstm.py; LSTM_PARTS="timing persistent breakdown" adds the
# persistent kernels, tried and not kept), then the headline train step at fp32 default
# precision in both semantics with the scan's gradient recomputed (JAXAUDIO_LSTM_GRAD=recompute,
# the default) and taken by autodiff (=autodiff), everything else equal. The steps compile cold side
# by side (cold compile
# times are upper bounds), then each is timed in its own process that loads it from the
# persistent cache. Results: $OUT/{env.txt,lstm.jsonl,train_step.jsonl,all.log}.
#   bash experiments/bench_lstm_h200.sh
#   STEPS=none bash experiments/bench_lstm_h200.sh          # the kernels only
#   LSTM_PARTS=none GRADS=recompute PRECISIONS=bf16 bash experiments/bench_lstm_h200.sh
set -u
O=${OUT:-/tmp/lstm_out}; C=/tmp/jcc_lstm
PRECS=${PRECISIONS:-fp32}
source "$(dirname "$0")/bench_env.sh"
if [[ ${LSTM_PARTS:-timing} != none ]]; then
  say "lstm kernels ${LSTM_PARTS:-timing}"
  timeout ${LSTM_TIMEOUT:-240} $PY experiments/bench_lstm.py --parts ${LSTM_PARTS:-timing} \
    --repeat 10 --out "$O/lstm.jsonl" >> "$L" 2>&1 || { say "lstm kernels FAILED rc=$?"; exit 1; }
fi
[[ ${STEPS:-} == none ]] && { say done; exit 0; }
GRADS=${GRADS:-recompute autodiff}
SEMS=${SEMANTICS:-cached raw}
say "cold compiles side by side: lstm grad $GRADS x semantics $SEMS x $PRECS"
for p in $PRECS; do for r in $GRADS; do for s in $SEMS; do
  JAXAUDIO_LSTM_GRAD=$r XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 timeout 300 $B --compile_only \
    --semantics $s --precision $p >> "$L" 2>&1 &
done; done; done
wait
for p in $PRECS; do for s in $SEMS; do for r in $GRADS; do
  say "warm $s $p JAXAUDIO_LSTM_GRAD=$r"
  JAXAUDIO_LSTM_GRAD=$r timeout 100 $B --semantics $s --precision $p >> "$L" 2>&1 \
    || say "FAILED rc=$? $s $p $r"
done; done; done
say done
