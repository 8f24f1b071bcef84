#!/usr/bin/env bash
# The codec's two convolution forms (JAXAUDIO_CODEC_CONV=padded: the reference's pad-then-
# convolve order, a dilated input for the transposed convolutions; unpadded: padding inside the
# convolution, reflected edges recomputed, transposed convolutions as stride phases) on one H200
# in one device call (about 8 minutes), everything else equal:
#   the headline train step, fp32 default precision, raw clips x CONVS x ROUTES (attention
#   routes) and cached clips with the unpadded form x ROUTES; with TRITON_GEMM_OFF=1 also raw
#   clips, unpadded, auto with XLA's Triton GEMM emitter off (cuBLAS for every product, the
#   LSTM's per-step product included); cold compiles side by side, then each timed alone from
#   the persistent cache; then (CODEC=1) the codec alone (bench_codec.py, scan LSTM) in both
#   forms.
# Results: $OUT/{env.txt,train_step.jsonl,codec.jsonl,all.log}.
#   bash experiments/bench_codec_conv_h200.sh
#   CONVS=unpadded ROUTES=auto SEMANTICS=raw bash experiments/bench_codec_conv_h200.sh
#   ROUTES=auto PRECISIONS="fp32 bf16" bash experiments/bench_codec_conv_h200.sh  (the padded
#   form runs at fp32 with raw clips only)
set -u
O=${OUT:-/tmp/codec_conv_out}; C=/tmp/jcc_codec_conv
source "$(dirname "$0")/bench_env.sh"
CONVS=${CONVS:-padded unpadded}; ROUTES=${ROUTES:-auto pallas}; SEMANTICS=${SEMANTICS:-raw cached}
PRECS=${PRECISIONS:-fp32}
cases=()
for p in $PRECS; do for s in $SEMANTICS; do for c in $CONVS; do for r in $ROUTES; do
  [[ $c == padded && ( $s == cached || $p != fp32 ) ]] && continue
  cases+=("$s $c $r - $p")
done; done; done; done
[[ ${TRITON_GEMM_OFF:-0} == 1 ]] && cases+=("raw unpadded auto --xla_gpu_enable_triton_gemm=false fp32")
frac=$(python3 -c "print(min(0.15, 0.9 / ${#cases[@]}))")
say "cold compiles side by side: ${#cases[@]} cases (semantics conv route)"
flags() { [[ $1 == - ]] && echo "${XLA_FLAGS:-}" || echo "${XLA_FLAGS:-} $1"; }
for x in "${cases[@]}"; do set -- $x
  XLA_FLAGS=$(flags $4) JAXAUDIO_CODEC_CONV=$2 JAXAUDIO_ATTENTION=$3 \
    XLA_PYTHON_CLIENT_MEM_FRACTION=$frac timeout 300 $B --compile_only --semantics $1 \
    --precision $5 >> "$L" 2>&1 &
done
wait
for x in "${cases[@]}"; do set -- $x
  say "warm $1 conv=$2 attention=$3 flags=$4 precision=$5"
  XLA_FLAGS=$(flags $4) JAXAUDIO_CODEC_CONV=$2 JAXAUDIO_ATTENTION=$3 timeout 100 \
    $B --semantics $1 --precision $5 >> "$L" 2>&1 \
    || say "FAILED rc=$? $x"
done
if [[ ${CODEC:-0} == 1 ]]; then for c in padded unpadded; do
  say "codec alone conv=$c"
  JAXAUDIO_CODEC_CONV=$c timeout 120 $PY experiments/bench_codec.py --no-torch --impls scan \
    >> "$O/codec.jsonl" 2>> "$L" || say "codec FAILED rc=$? $c"
done; fi
say done
