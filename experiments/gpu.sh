#!/usr/bin/env bash
# Every GPU benchmark, for one device call on one GPU. Results in $OUT:
#   env.txt            the GPU, its driver, the versions and the commit
#   train_step.jsonl   bench_train_step.py, the original's headline configuration with its GAN,
#                      masks and cascade update: raw clips fp32 (equal semantics), cached fp32,
#                      cached bf16; each compiled into a fresh compilation cache, then run again
#                      loaded from it (a clean allocator peak), waited for and pipelined
#   original.jsonl     the original's own train step (original_step.py), TF32 on; needs ORIG
#                      (a clone of Vlasenko2006/PowerMuse) and ENC (encodec 0.1.1, unpacked)
#   losses.jsonl, codec.jsonl, kernels.jsonl
#                      bench_losses.py, bench_codec.py (with torch references when the
#                      encodec package imports), bench_kernels.py
# ONCE=1 runs each step case once (compiled cold, its peak then includes the autotuner's).
# CASES picks step cases (default "raw cached_fp32 cached_bf16"; also "raw_jaxaudio" and
# "cached_jaxaudio", the step with jaxaudio's training defaults instead of the original's GAN,
# masks and cascade update).
# EXTRA adds bench_train_step.py flags to every step case (e.g. "--precision bf16");
# PROFILE=1 traces each step case and keeps profile_summary.py's summary as profile_<case>.json;
# COMPILE_TRACE=1 adds each case's longest compile phases to its record.
# STAGES picks what runs (default "step losses codec kernels"; also "original", "compositional":
# the compositional agent's step in both systems, and "musical": the musical recipe's memory).
#   OUT=/tmp/gpu bash experiments/gpu.sh
#   ORIG=.device_carry/PowerMuse ENC=.device_carry/encodec-0.1.1 STAGES="original compositional" \
#     bash experiments/gpu.sh
set -u
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/jaxaudio_gpu}; C=/tmp/jaxaudio_jcc; PY=${PY:-python3}
STAGES=" ${STAGES:-step losses codec kernels} "
mkdir -p "$O"; L=$O/all.log
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
[ -n "${ENC:-}" ] && export PYTHONPATH="$(realpath "$ENC")${PYTHONPATH:+:$PYTHONPATH}"
say() { echo "=== t=${SECONDS}s $*" | tee -a "$L"; }
has() { [[ $STAGES == *" $1 "* ]]; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import jax, flax, optax, orbax.checkpoint as o; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "orbax", o.__version__, jax.devices())'
  $PY -c 'import torch; print("torch", torch.__version__)' 2>/dev/null
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo "${COMMIT:-unknown}")"; } > "$O/env.txt" 2>&1
B="$PY experiments/bench_train_step.py --out $O/train_step.jsonl"
step() {  # a case compiled into a fresh cache, then loaded from it: $1 = cache name, rest = flags
  local name=$1 cache=$C/$1 more=(${EXTRA:-}); shift; rm -rf "$cache" "/tmp/jaxaudio_prof_$name"
  [ -n "${PROFILE:-}" ] && more+=(--profile_dir "/tmp/jaxaudio_prof_$name")
  [ -n "${COMPILE_TRACE:-}" ] && more+=(--compile_trace "/tmp/jaxaudio_ctrace_$name")
  timeout 420 $B --compilation_cache_dir "$cache" "$@" "${more[@]}" >> "$L" 2>&1
  [ -n "${PROFILE:-}" ] && $PY experiments/profile_summary.py "/tmp/jaxaudio_prof_$name" \
    --out "$O/profile_$name.json" > /dev/null 2>> "$L"
  [ -n "${ONCE:-}" ] || timeout 200 $B --compilation_cache_dir "$cache" "$@" ${EXTRA:-} >> "$L" 2>&1
}
if has step; then
  for case in "raw --semantics raw" "cached_fp32 --semantics cached" \
              "cached_bf16 --semantics cached --precision bf16" \
              "raw_jaxaudio --semantics raw --variant jaxaudio" \
              "cached_jaxaudio --semantics cached --variant jaxaudio"; do
    [[ " ${CASES:-raw cached_fp32 cached_bf16} " == *" ${case%% *} "* ]] || continue
    say "train step: $case"; step $case
  done
fi
if has original; then
  say "the original's step, masking agent"
  timeout 300 $PY experiments/original_step.py --original_dir "$ORIG" --encodec_dir "$ENC" \
    --agent masking --out "$O/original.jsonl" >> "$L" 2>&1
fi
if has compositional; then
  [ -n "${ORIG:-}" ] && { say "the original's step, compositional agent"
    timeout 300 $PY experiments/original_step.py --original_dir "$ORIG" --encodec_dir "$ENC" \
      --agent compositional --out "$O/original.jsonl" >> "$L" 2>&1; }
  say "train step: compositional, raw clips"; step comp --semantics raw --agent compositional
fi
if has musical; then
  say "train step: the musical recipe, compositional, memory"
  timeout 300 $B --config musical --codec mdct --agent compositional --batch_per_device 32 \
    --clip_seconds 4 --memory_only --memory_report /tmp/xla_musical >> "$L" 2>&1
fi
if has losses; then say losses; timeout 300 $PY experiments/bench_losses.py > "$O/losses.jsonl" 2>> "$L"; fi
if has codec; then say codec; timeout 300 $PY experiments/bench_codec.py > "$O/codec.jsonl" 2>> "$L"; fi
if has kernels; then say kernels; timeout 300 $PY experiments/bench_kernels.py --out "$O/kernels.jsonl" >> "$L" 2>&1; fi
say done
cat "$O/env.txt"
for f in "$O"/*.jsonl; do echo "== $f"; cut -c1-400 "$f"; done
