# Sourced by the bench_*_h200.sh scripts: with O (results folder) and C (a fresh persistent
# compilation cache folder) set, defines PY, R (train-step JSON lines), L (log), B (the
# train-step benchmark command), say (a timed log line), lstm_part (EnCodec's LSTM alone:
# bench_lstm.py --parts ${LSTM_PARTS:-timing} into $O/lstm.jsonl; LSTM_PARTS=none skips it)
# and writes $O/env.txt (GPU, versions, XLA_FLAGS, commit).
mkdir -p "$O"; rm -rf "$C"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
PY=${PY:-python3}
R=$O/train_step.jsonl; L=$O/all.log
B="$PY experiments/bench_train_step.py --compilation_cache_dir $C --out $R"
say() { echo "=== t=${SECONDS}s $*" | tee -a "$L"; }
lstm_part() {
  [[ ${LSTM_PARTS:-timing} == none ]] && return 0
  say "lstm ${LSTM_PARTS:-timing}"
  timeout ${LSTM_TIMEOUT:-240} $PY experiments/bench_lstm.py --parts ${LSTM_PARTS:-timing} \
    --repeat 10 --out "$O/lstm.jsonl" >> "$L" 2>&1
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c 'import jax, flax, optax; print(jax.__version__, flax.__version__, optax.__version__, jax.devices())'
  echo "XLA_FLAGS=${XLA_FLAGS:-}"
  git log -1 --format=%H 2>/dev/null; } > "$O/env.txt" 2>&1
