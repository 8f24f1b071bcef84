#!/usr/bin/env bash
# The loss decode's precision (--codec_precision) on one H200 in one device call (about 7
# minutes): first EnCodec's LSTM alone (bench_lstm.py --parts timing: each scan form's time
# and its error against the scan at full float32; LSTM_PARTS=none skips it), then the
# headline train step for each of CASES (semantics:precision:codec_precision, and optionally
# :NAME=VALUE entries, environment variables for that case alone), compiled cold side by side,
# then each timed alone from the persistent cache and (PROFILE=1, the default) traced for 2 more
# steps; profile_summary.py sums the kernels per source line and hlo_loop_fusions.py lists
# each while loop's kernels per iteration (the first case's).
# Results: $OUT/{env.txt,all.log,lstm.jsonl,train_step.jsonl,profile_<case>.json,loops_<case>.json}
#   bash experiments/bench_codec_precision_h200.sh
#   CASES="cached:bf16:bf16 raw:fp32:bf16" LSTM_PARTS=none bash experiments/bench_codec_precision_h200.sh
#   CASES="cached:bf16:bf16 cached:bf16:bf16:JAXAUDIO_LSTM_UNROLL=16" LSTM_PARTS=none bash ...
#   CASES="raw:fp32:fp32 raw:fp32:fp32:JAXAUDIO_FLASH_WIDTH=pad:JAXAUDIO_FLASH_DQ=recompute" ...
set -u
O=${OUT:-/tmp/codec_precision_out}; C=/tmp/jcc_codec_precision
source "$(dirname "$0")/bench_env.sh"
lstm_part || say "lstm FAILED rc=$?"
CASES=${CASES:-cached:bf16:fp32 cached:bf16:bf16 cached:fp32:bf16}
read -ra runs <<< "$CASES"
frac=$(python3 -c "print(min(0.3, 0.9 / ${#runs[@]}))")
say "cold compiles side by side: $CASES"
for x in "${runs[@]}"; do IFS=: read -r s p q e <<< "$x"
  env ${e//:/ } XLA_PYTHON_CLIENT_MEM_FRACTION=$frac timeout 300 $B --compile_only --semantics $s \
    --precision $p --codec_precision $q >> "$L" 2>&1 &
done
wait
for x in "${runs[@]}"; do IFS=: read -r s p q e <<< "$x"
  n=${s}_${p}_codec_${q}${e:+_${e//[^A-Za-z0-9]/_}}
  say "warm $x"
  prof=(); [[ ${PROFILE:-1} == 1 ]] && prof=(--profile_dir /tmp/trace_$n)
  env ${e//:/ } timeout 150 $B --semantics $s --precision $p --codec_precision $q "${prof[@]}" >> "$L" 2>&1 \
    || say "FAILED rc=$? $x"
  if [[ ${PROFILE:-1} == 1 ]]; then
    $PY experiments/profile_summary.py /tmp/trace_$n --out "$O/profile_$n.json" > /dev/null \
      2>> "$L" || say "summary FAILED $n"
    [[ $x == "${runs[0]}" ]] && { $PY experiments/hlo_loop_fusions.py /tmp/trace_$n/hlo.txt \
      --out "$O/loops_$n.json" >> "$L" 2>&1 || say "loop report FAILED $n"; }
  fi
done
say done
