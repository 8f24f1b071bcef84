#!/usr/bin/env bash
# Issue 12's recipe for 40 epochs on one GPU, both agents, then the 50 + 50 pair evaluation
# (band measures included), blends and report pages: one device call. Results in $OUT
# (long_run.tar, *_metrics.jsonl, env.txt, blend.log). The recorded pairs come from
# make_recorded_eval_set.py (carry them: .device/recorded50/val); the GPU image lacks
# soundfile: carry its wheels in .whl/.
#   TRAIN_S=380 bash experiments/blend_gpu.sh
#   VARIANTS="onset:40:--gan_weight=0.1 comp:40:--gan_weight=0.1:--creative_agent=compositional"
set -u
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/blend}; R=${ROOT:-/tmp/blend_runs}; mkdir -p "$O" "$R"; L=$O/blend.log
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
VARIANTS=${VARIANTS:-"onset:40:--gan_weight=0.1 energy:40:--gan_weight=0.1:--mask_gate=energy comp:40:--gan_weight=0.1:--creative_agent=compositional"}
NAMES=$(for v in $VARIANTS; do echo -n "${v%%:*} "; done)
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())'
  echo "commit ${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"; echo "variants $VARIANTS"; } > "$O/env.txt" 2>&1
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
SECONDS=0
python3 experiments/long_run.py train --root "$R" --deadline "${TRAIN_S:-380}" --out "$O" $VARIANTS >> "$L" 2>&1
echo "=== trained at ${SECONDS}s" >> "$L"
python3 experiments/long_run.py eval --root "$R" --out "$O" --recorded "${RECORDED:-.device/recorded50/val}" \
  --report_pairs "${REPORT_PAIRS:-3}" $NAMES >> "$L" 2>&1
echo "=== evaluated at ${SECONDS}s" >> "$L"
for n in $NAMES; do tail -n 4 "$R/${n}_train.log" | tr '\r' '\n' | tail -n 2 >> "$L"; done
tail -n 40 "$L"
