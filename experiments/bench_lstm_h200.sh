#!/usr/bin/env bash
# EnCodec's LSTM on one H200 in one device call (about 8 minutes): the scan's forms timed alone
# (bench_lstm.py: each step's states behind an optimisation barrier or fused across steps by
# XLA, the recomputed gradient and autodiff; LSTM_PARTS="timing persistent breakdown" adds the
# persistent kernels, tried and not kept), then the headline train step for each of CASES
# (semantics:precision) x GRADS (JAXAUDIO_LSTM_GRAD) x STEP_FORMS (JAXAUDIO_LSTM_STEP),
# everything else equal. The steps compile cold side by side (cold compile times are upper
# bounds), then each is timed in its own process that loads it from the persistent cache.
# Results: $OUT/{env.txt,lstm.jsonl,train_step.jsonl,all.log}.
#   bash experiments/bench_lstm_h200.sh
#   STEPS=none bash experiments/bench_lstm_h200.sh          # the LSTM alone
#   CASES="cached:fp32 raw:fp32" GRADS="recompute autodiff" STEP_FORMS=fused \
#     bash experiments/bench_lstm_h200.sh    # the sixth session's comparison
set -u
O=${OUT:-/tmp/lstm_out}; C=/tmp/jcc_lstm
source "$(dirname "$0")/bench_env.sh"
lstm_part || { say "lstm kernels FAILED rc=$?"; exit 1; }
[[ ${STEPS:-} == none ]] && { say done; exit 0; }
CASES=${CASES:-raw:fp32 cached:fp32 cached:bf16}; GRADS=${GRADS:-recompute}
STEP_FORMS=${STEP_FORMS:-barrier fused}
runs=()
for c in $CASES; do for r in $GRADS; do for q in $STEP_FORMS; do
  runs+=("${c%:*} ${c#*:} $r $q"); done; done; done
frac=$(python3 -c "print(min(0.15, 0.9 / ${#runs[@]}))")
say "cold compiles side by side: ${#runs[@]} runs (semantics precision grad step)"
for x in "${runs[@]}"; do set -- $x
  JAXAUDIO_LSTM_GRAD=$3 JAXAUDIO_LSTM_STEP=$4 XLA_PYTHON_CLIENT_MEM_FRACTION=$frac \
    timeout 300 $B --compile_only --semantics $1 --precision $2 >> "$L" 2>&1 &
done
wait
for x in "${runs[@]}"; do set -- $x
  say "warm $1 $2 JAXAUDIO_LSTM_GRAD=$3 JAXAUDIO_LSTM_STEP=$4"
  JAXAUDIO_LSTM_GRAD=$3 JAXAUDIO_LSTM_STEP=$4 timeout 100 $B --semantics $1 --precision $2 \
    >> "$L" 2>&1 || say "FAILED rc=$? $x"
done
say done
