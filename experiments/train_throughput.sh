#!/usr/bin/env bash
# The train step's throughput as `python -m jaxaudio.train` reaches it (the loader, the host's
# dispatch and the pipelined steps included): the original's headline configuration
# (headline.sh, with the original's GAN, masks and cascade update as bench_train_step.py's
# `--variant original`) on a synthetic dataset of $PAIRS pairs (660) of $CLIP_S s (16; 74 steps
# an epoch at batch 8) and a random-weight EnCodec, for $EPOCHS epochs (3). Each epoch's
# `samples_per_second` (metrics.jsonl) times its train loop alone; the first epoch's includes
# the step's compile.
# Results: $OUT/{metrics.jsonl,train.log}
#   OUT=/tmp/tp bash experiments/train_throughput.sh --precision bf16   # [--use_cache false]
#   OUT=/tmp/tp PAIRS=12 CLIP_S=4 EPOCHS=2 bash experiments/train_throughput.sh --num_layers 1  # CPU check
set -euo pipefail
O=${OUT:-/tmp/train_throughput}; W=${WORK:-/tmp/train_throughput_work}
PY=${PY:-python3}
mkdir -p "$O"; rm -rf "$W"; mkdir -p "$W"
$PY - "$W" "${PAIRS:-660}" "${CLIP_S:-16}" <<'PYEOF'
import sys
from jaxaudio.codecs import make_codec
from jaxaudio.codecs.encodec.weight_files import save_encodec
from jaxaudio.data.synth import make_synthetic_dataset
work, pairs, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
make_synthetic_dataset(f"{work}/data", num_pairs=pairs, duration=seconds, seed=0, sample_rate=24000)
save_encodec(make_codec("encodec", random_seed=0), f"{work}/encodec.safetensors")
PYEOF
set +e
ENCODEC_WEIGHTS=$W/encodec.safetensors DATASET=$W/data PYTHONUNBUFFERED=1 \
  bash "$(dirname "$0")/headline.sh" --clip_seconds "${CLIP_S:-16}" --epochs "${EPOCHS:-3}" \
  --checkpoint_dir "$W/checkpoints" --no_mlflow \
  --gan_variant original --mask_gate learned --cascade_update additive "$@" > "$O/train.log" 2>&1
rc=$?
cp "$W/checkpoints/metrics.jsonl" "$O/" 2>/dev/null
$PY -c "import json,sys
for l in open(sys.argv[1]): r = json.loads(l); print('epoch', r['epoch'], 'samples/s', round(r['train_samples_per_second'], 2), 'loss', round(r['train_loss'], 4))" \
  "$O/metrics.jsonl" 2>/dev/null || tail -20 "$O/train.log"
exit $rc
