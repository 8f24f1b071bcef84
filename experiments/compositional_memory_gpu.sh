#!/usr/bin/env bash
# The compositional agent's train step beside the original's, in one device call:
#   1. the original's own step (experiments/original_step.py) at the headline configuration
#      with the compositional agent: torch.cuda.max_memory_allocated and its time, TF32 on;
#   2. jaxaudio's step at equal semantics (raw clips; the original's GAN, masks and cascade
#      update) with the same agent: compiled once into a fresh compilation cache, then loaded
#      from it, so that the second run's allocator peak holds no autotuning scratch; XLA's
#      memory analysis in both;
#   3. the musical recipe (MDCT codec, batch 32 of 4 s, 4 layers, GAN 0.1) with the agent:
#      XLA's memory analysis and its largest live buffers (--memory_report).
# ORIG: a clone of the original (Vlasenko2006/PowerMuse); ENC: the folder holding the encodec
# 0.1.1 package (its sdist, unpacked). Results: $O/train_step.jsonl, $O/original.jsonl.
#   ORIG=.device_carry/PowerMuse ENC=.device_carry/encodec-0.1.1 \
#     bash experiments/compositional_memory_gpu.sh
set -u
O=${OUT:-/tmp/compositional_memory}; C=/tmp/jaxaudio_jcc
source experiments/bench_env.sh
ORIG=${ORIG:-.device_carry/PowerMuse}; ENC=${ENC:-.device_carry/encodec-0.1.1}
say "original, compositional"
timeout 300 $PY experiments/original_step.py --original_dir "$ORIG" --encodec_dir "$ENC" \
  --agent compositional --out "$O/original.jsonl" >> "$L" 2>&1
say "jaxaudio, compositional, raw clips: compile"
timeout 420 $B --semantics raw --agent compositional --steps 10 >> "$L" 2>&1
say "jaxaudio, compositional, raw clips: from the cache"
timeout 200 $B --semantics raw --agent compositional --steps 10 >> "$L" 2>&1
say "musical recipe, compositional: memory"
timeout 300 $PY experiments/bench_train_step.py --config musical --codec mdct \
  --agent compositional --batch_per_device 32 --clip_seconds 4 --memory_only \
  --memory_report "$O/xla_musical" --out "$R" >> "$L" 2>&1
rm -rf "$O/xla_musical"  # its largest buffers are in the JSON line
say done
tail -n 4 "$R" "$O/original.jsonl"
