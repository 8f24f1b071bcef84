#!/usr/bin/env bash
# The CPU benchmarks, on this machine. Results in $OUT:
#   env.txt          CPUs, versions, commit
#   loader.jsonl     bench_loader.py: raw WAVs and the latent cache, with and without prefetch
#   losses.jsonl     bench_losses.py at its small size, JAX alone
#   builtin_eval.json  the built-in run (python -m jaxaudio.train) evaluated on 11 unseen
#                    pairs (python -m jaxaudio.evaluate): the musical-quality guard
#   OUT=/tmp/cpu bash experiments/cpu.sh
set -u
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/jaxaudio_cpu}; W=${WORK:-/tmp/jaxaudio_cpu_work}; PY=${PY:-python3}
mkdir -p "$O" "$W"
export JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
{ echo "cpus $(nproc)"; $PY -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__)'
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"; } > "$O/env.txt"
$PY experiments/bench_loader.py --num_pairs 48 --duration 16 > "$O/loader.jsonl"
$PY experiments/bench_losses.py --small --no-torch > "$O/losses.jsonl"
(cd "$W" && rm -rf runs && $PY -m jaxaudio.train > train.log 2>&1 &&
 $PY -m jaxaudio.evaluate --checkpoint runs/builtin/checkpoints --output_json "$O/builtin_eval.json")
cat "$O/env.txt"; tail -n 3 "$W/train.log"
