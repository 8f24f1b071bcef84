#!/usr/bin/env bash
# Where the headline train step's GPU time goes, on one H200 in one device call (about 6
# minutes): the steps of $SEMANTICS (default: cached raw) at $PRECISION (default fp32) compile
# cold side by side, then each runs its timing (bench_train_step.py) and traces 2 more steps
# (--profile_dir); profile_summary.py sums the kernels' time per source file and line.
# Results: $OUT/{env.txt,train_step.jsonl,all.log,profile_<semantics>.json,loops_<semantics>.json}
# (experiments/hlo_loop_fusions.py: each while loop's kernels per iteration).
#   bash experiments/profile_h200.sh
set -u
O=${OUT:-/tmp/profile_out}; C=/tmp/jcc_profile
SEMS=${SEMANTICS:-cached raw}; PREC=${PRECISION:-fp32}
source "$(dirname "$0")/bench_env.sh"
say "cold compiles side by side: $SEMS at $PREC"
for s in $SEMS; do
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.3 timeout 300 $B --compile_only --semantics $s --precision $PREC \
    >> "$L" 2>&1 &
done
wait
for s in $SEMS; do
  say "warm $s $PREC, timed and traced"
  timeout 150 $B --semantics $s --precision $PREC --profile_dir /tmp/trace_$s >> "$L" 2>&1 \
    || say "FAILED rc=$? $s"
  $PY experiments/profile_summary.py /tmp/trace_$s --out "$O/profile_$s.json" > /dev/null 2>> "$L" \
    || say "summary FAILED $s"
done
# the compiled programs and traces, for a second look offline; the loops' kernels per iteration
for s in $SEMS; do
  gzip -c /tmp/trace_$s/hlo.txt > "$O/hlo_$s.txt.gz" 2>/dev/null
  $PY experiments/hlo_loop_fusions.py /tmp/trace_$s/hlo.txt --out "$O/loops_$s.json" >> "$L" 2>&1 \
    || say "loop report FAILED $s"
  cp "$(ls -t /tmp/trace_$s/plugins/profile/*/*.trace.json.gz | head -1)" "$O/trace_$s.json.gz" 2>/dev/null
done
say done
