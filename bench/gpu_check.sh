#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): in one run of at most 8 minutes on an H100 or H200, the train
# and generate code paths in bf16 and fp16 (LoRA, QLoRA), ours against a plain Trainer + PEFT on
# Qwen2.5-3B's architecture at full depth, and the doctor's memory estimate against the measured
# peak; one table, also written to $OUT with bench/measured.json.
#
# The GPU machine has no internet, no DVC, no hub and no bitsandbytes; at most 64 MiB travel. So:
#   here, once:  echo /.whl/ >> .git/info/exclude
#                python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
#                  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl -r bench/gpu_wheels.txt
#   there:       bash bench/gpu_check.sh           (carrying .whl; it reads nothing else, builds the model here)
#   anywhere:    bash bench/gpu_check.sh --dry-run  (CPU, toy sizes: tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site .whl/*.whl
  export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
