#!/usr/bin/env bash
# The loss decode's precision (--codec_precision) on one H200 in one device call (about 7
# minutes): first EnCodec's LSTM alone (bench_lstm.py --parts timing: each scan form's time
# and its error against the scan at full float32; LSTM_PARTS=none skips it), then the
# headline train step for each of CASES (semantics:precision:codec_precision, and optionally
# :NAME=VALUE entries, environment variables for that case alone, and :XLA+=FLAG entries, added
# to XLA_FLAGS for that case alone), compiled cold side by side,
# then each timed alone from the persistent cache and (PROFILE=1, the default) traced for 2 more
# steps (PROFILE=first: the first case alone; 0: none); profile_summary.py sums the kernels per
# source line and the GPU's idle time, and hlo_loop_fusions.py lists each while loop's kernels
# per iteration (the first case's). KEEP_TRACE=1 also returns each traced case's timeline and
# compiled program (trace_<case>.json.gz, hlo_<case>.txt.gz).
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
# a case's environment in envs: NAME=VALUE entries, XLA+=FLAG entries appended to XLA_FLAGS,
# and (a second argument, for compiles side by side) the GPU memory fraction
case_env() { local x extra=""; envs=(); IFS=: read -ra parts <<< "$1"
  for x in "${parts[@]}"; do
    if [[ $x == XLA+=* ]]; then extra+=" ${x#XLA+=}"; elif [[ -n $x ]]; then envs+=("$x"); fi
  done
  [[ -n $extra ]] && envs+=("XLA_FLAGS=${XLA_FLAGS:-}$extra")
  [[ -n ${2:-} ]] && envs+=("XLA_PYTHON_CLIENT_MEM_FRACTION=$2"); return 0; }
# SHARE_AUTOTUNE=1: the first case compiles alone and every case reuses its autotuning results
# (XLA's per-fusion autotune cache), so the cases run the same kernels where their fusions agree
# and the compiles side by side do not autotune on a shared GPU
if [[ ${SHARE_AUTOTUNE:-0} == 1 ]]; then
  rm -rf /tmp/autotune_shared; mkdir -p /tmp/autotune_shared
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_per_fusion_autotune_cache_dir=/tmp/autotune_shared"
fi
compile() { IFS=: read -r s p q e <<< "$1"; case_env "$e" "$frac"
  env "${envs[@]}" timeout 300 $B --compile_only --semantics $s --precision $p \
    --codec_precision $q >> "$L" 2>&1; }
rest=("${runs[@]}")
if [[ ${SHARE_AUTOTUNE:-0} == 1 ]]; then
  say "cold compile alone: ${runs[0]}"; compile "${runs[0]}"; rest=("${runs[@]:1}")
fi
say "cold compiles side by side: ${rest[*]}"
for x in "${rest[@]}"; do compile "$x" & done
wait
for x in "${runs[@]}"; do IFS=: read -r s p q e <<< "$x"
  n=${s}_${p}_codec_${q}${e:+_${e//[^A-Za-z0-9]/_}}
  say "warm $x"
  on=0; [[ ${PROFILE:-1} == 1 || ( ${PROFILE:-1} == first && $x == "${runs[0]}" ) ]] && on=1
  prof=(); [[ $on == 1 ]] && prof=(--profile_dir /tmp/trace_$n)
  case_env "$e"  # timed with the whole GPU
  env "${envs[@]}" timeout 150 $B --semantics $s --precision $p --codec_precision $q "${prof[@]}" >> "$L" 2>&1 \
    || say "FAILED rc=$? $x"
  if [[ $on == 1 ]]; then
    $PY experiments/profile_summary.py /tmp/trace_$n --out "$O/profile_$n.json" > /dev/null \
      2>> "$L" || say "summary FAILED $n"
    [[ $x == "${runs[0]}" ]] && { $PY experiments/hlo_loop_fusions.py /tmp/trace_$n/hlo.txt \
      --out "$O/loops_$n.json" >> "$L" 2>&1 || say "loop report FAILED $n"; }
    if [[ ${KEEP_TRACE:-0} == 1 ]]; then  # the timeline and the program, for a look offline
      gzip -c /tmp/trace_$n/hlo.txt > "$O/hlo_$n.txt.gz" 2>/dev/null
      cp "$(ls -t /tmp/trace_$n/plugins/profile/*/*.trace.json.gz | head -1)" "$O/trace_$n.json.gz"
    fi
  fi
done
say done
