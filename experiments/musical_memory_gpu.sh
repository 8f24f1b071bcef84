#!/usr/bin/env bash
# Device memory of the musical recipe (issue 12's: MDCT codec, batch 32 of 4 s, 4 layers,
# GAN 0.1) with the compositional agent, in one device call:
#   1. the train step alone (bench_train_step.py --memory_only) with jaxaudio's defaults
#      (stable GAN, energy masks, gain update) and with the original's variant;
#   2. python -m jaxaudio.train itself on a small synthetic dataset of 4-s pairs, stopped after
#      3 steps, with XLA's buffer assignment of every program it compiles dumped: each
#      program's total (train step, validation, sample prediction) goes to $O/programs.txt.
#   bash experiments/musical_memory_gpu.sh            # results in $OUT
set -u
O=${OUT:-/tmp/musical_memory}; C=/tmp/jaxaudio_jcc
source experiments/bench_env.sh
for variant in jaxaudio original; do
  say "train step, musical recipe, compositional, --variant $variant"
  timeout 240 $PY experiments/bench_train_step.py --config musical --codec mdct \
    --agent compositional --variant $variant --batch_per_device 32 --clip_seconds 4 \
    --memory_only --memory_report "/tmp/xla_$variant" --out "$R" >> "$L" 2>&1
done
say "jaxaudio.train, musical recipe, compositional"
D=/tmp/musical_pairs
$PY -m jaxaudio.data.synth --output_dir $D --num_pairs 110 --duration 4 --seed 0 >> "$L" 2>&1
XLA_FLAGS="${XLA_FLAGS:-} --xla_dump_to=/tmp/xla_train" timeout 300 $PY -m jaxaudio.train \
  --builtin --dataset_folder $D --clip_seconds 4 --num_layers 4 --batch_size 32 \
  --use_compositional_agent true --gan_weight 0.1 --epochs 1 --no_mlflow \
  --checkpoint_dir /tmp/musical_ck --stop_after_steps 3 >> "$L" 2>&1
echo "exit $?" >> "$L"
for f in /tmp/xla_train/*memory-usage-report.txt; do
  [ -e "$f" ] || continue
  echo "$(sed -n 2p "$f" | tr -d '\n') $(basename "$f")"
done | sort -t'(' -k2 -g -r | head -20 > "$O/programs.txt"
say done
cat "$O/programs.txt"; tail -n 3 "$L"
python3 - "$R" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["variant"], r["agent"], "step GiB", r.get("step_memory_gib"), "temp GiB",
          r.get("temp_gib"), "params", r.get("parameters"))
    print("\n".join(r.get("largest_buffers", [])[1:10]))
EOF
