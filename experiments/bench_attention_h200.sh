#!/usr/bin/env bash
# The float32 flash attention kernel on one H200 in one device call (about 8 minutes):
# kernel parity and timing (bench_kernels.py --parts parity timing), then the headline train step
# at fp32 default precision in both semantics, with the kernel (JAXAUDIO_ATTENTION=auto) and
# with the explicit XLA route (JAXAUDIO_ATTENTION=xla), everything else equal. The four steps
# compile cold side by side (so their cold compile times are upper bounds), then each is timed
# in its own process that loads it from the persistent cache (warm compile, clean allocator
# peak). Results: $OUT/{env.txt,kernels.jsonl,train_step.jsonl,all.log}.
#   bash experiments/bench_attention_h200.sh
#   ROUTES=auto PRECISIONS="fp32 bf16" KERNEL_PARTS=timing bash experiments/bench_attention_h200.sh
set -u
O=${OUT:-/tmp/attention_out}; C=/tmp/jcc_attention
PRECS=${PRECISIONS:-fp32}
source "$(dirname "$0")/bench_env.sh"
if [[ ${KERNEL_PARTS:-parity timing} != none ]]; then
  say "kernels ${KERNEL_PARTS:-parity timing}"
  timeout 200 $PY experiments/bench_kernels.py --parts ${KERNEL_PARTS:-parity timing} --repeat 10 \
    --out "$O/kernels.jsonl" >> "$L" 2>&1 || say "kernels FAILED rc=$?"
fi
ROUTES=${ROUTES:-auto xla}
say "cold compiles side by side: routes $ROUTES x semantics cached raw x $PRECS"
for p in $PRECS; do for r in $ROUTES; do for s in cached raw; do
  JAXAUDIO_ATTENTION=$r XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 timeout 300 $B --compile_only \
    --semantics $s --precision $p >> "$L" 2>&1 &
done; done; done
wait
for p in $PRECS; do for s in cached raw; do for r in $ROUTES; do
  say "warm $s $p JAXAUDIO_ATTENTION=$r"
  JAXAUDIO_ATTENTION=$r timeout 100 $B --semantics $s --precision $p >> "$L" 2>&1 \
    || say "FAILED rc=$? $s $p $r"
done; done; done
say done
