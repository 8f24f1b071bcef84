#!/usr/bin/env bash
# XLA command buffers for while loops (the EnCodec LSTM's scan) on one H200, one device call
# (about 6 minutes): the LSTM's scan at unroll 1/4/8 (bench_kernels.py --parts lstm), then the
# headline fp32 train step (cached and raw) at unroll 8 and 1, with
#   --xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,WHILE,CONDITIONAL
# (the default adds no WHILE/CONDITIONAL; compare with bench_attention_h200.sh's figures).
# Results: $OUT/{env.txt,kernels.jsonl,train_step.jsonl,all.log}.
#   bash experiments/bench_while_buffers_h200.sh
set -u
O=${OUT:-/tmp/while_out}; C=/tmp/jcc_while
export XLA_FLAGS="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,WHILE,CONDITIONAL"
source "$(dirname "$0")/bench_env.sh"
say "lstm scan"
timeout 120 $PY experiments/bench_kernels.py --parts lstm --out "$O/kernels.jsonl" >> "$L" 2>&1 \
  || say "lstm FAILED rc=$?"
CONFIGS=("8 cached" "8 raw" "1 cached" "1 raw")
say "cold compiles side by side: ${CONFIGS[*]}"
for c in "${CONFIGS[@]}"; do set -- $c
  JAXAUDIO_LSTM_UNROLL=$1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.15 timeout 300 $B --compile_only \
    --semantics $2 >> "$L" 2>&1 &
done
wait
for c in "${CONFIGS[@]}"; do set -- $c
  say "warm unroll $1 $2"
  JAXAUDIO_LSTM_UNROLL=$1 timeout 100 $B --semantics $2 >> "$L" 2>&1 || say "FAILED rc=$? $c"
done
say done
