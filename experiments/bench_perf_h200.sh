#!/usr/bin/env bash
# Issue 13's measurements in one device call on one H200 (about 6 minutes): kernel parity and
# timing, then the headline train step in both semantics (cached, raw) at fp32 and bf16.
# The headline step (cached, fp32) compiles cold alone, then a second process loads it from
# the persistent cache (warm compile, clean allocator peak, timing). The other three compile
# cold side by side (to fit the lease; their cold times are upper bounds), then each is timed
# in its own warm process. Results: $OUT/{env.txt,kernels.jsonl,train_step.jsonl,all.log}.
#   bash experiments/bench_perf_h200.sh
set -u
O=${OUT:-/tmp/perf_out}; C=/tmp/jcc_perf
source "$(dirname "$0")/bench_env.sh"
say kernels
timeout 150 $PY experiments/bench_kernels.py --parts lstm parity --out "$O/kernels.jsonl" >> "$L" 2>&1
say "cached fp32 cold"
timeout 200 $B --compile_only >> "$L" 2>&1
say "cached fp32 warm"
timeout 120 $B >> "$L" 2>&1
say "three cold compiles side by side"
for c in "--precision bf16" "--semantics raw" "--semantics raw --precision bf16"; do
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.22 timeout 240 $B --compile_only $c >> "$L" 2>&1 &
done
wait
for c in "--precision bf16" "--semantics raw" "--semantics raw --precision bf16"; do
  say "warm $c"
  timeout 120 $B $c >> "$L" 2>&1 && continue
  say "FAILED rc=$? $c"
  if [[ $c == *bf16* && $SECONDS -lt 330 ]]; then  # retry on the float32 attention route
    say "retry JAXAUDIO_ATTENTION=xla $c"
    JAXAUDIO_ATTENTION=xla timeout 150 $B $c >> "$L" 2>&1 || say "FAILED again rc=$?"
  fi
done
say done
