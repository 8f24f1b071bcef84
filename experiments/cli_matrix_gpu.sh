#!/usr/bin/env bash
# The command-line matrix (tests/test_cli_matrix.py: every agent with every GAN setting, trained
# two steps through jaxaudio.train, then generate, evaluate and a resume) on a GPU, in one
# device call. The four-device rows run on every GPU the machine has. The GPU image lacks
# soundfile: carry its wheels (with cffi and pycparser) in .whl/.
#   bash experiments/cli_matrix_gpu.sh        # results in $OUT (cli_matrix.log, env.txt)
#   MATRIX_K="compositional" bash experiments/cli_matrix_gpu.sh   # some rows (pytest -k)
set -u
O=${OUT:-/tmp/cli_matrix}; mkdir -p "$O"
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import jax, flax, optax, orbax.checkpoint as o; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "orbax", o.__version__, jax.devices())'
  echo "commit ${COMMIT:-unknown}"; } > "$O/env.txt" 2>&1
export JAX_PLATFORMS=cuda XLA_FLAGS= XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
SECONDS=0
python3 -m pytest -q -p no:cacheprovider -rA --durations=12 \
  "tests/test_cli_matrix.py::test_train_generate_evaluate_resume" ${MATRIX_K:+-k "$MATRIX_K"} \
  > "$O/cli_matrix.log" 2>&1
rc=$?
echo "exit $rc after ${SECONDS}s" >> "$O/cli_matrix.log"
cat "$O/env.txt"; grep -E "^(PASSED|FAILED|ERROR)|passed|failed|exit " "$O/cli_matrix.log"
exit $rc
