#!/usr/bin/env bash
# One device call that times the issue-6 goal: the 1000 ImageNet classes of EfficientNet-Lite0
# through the shipped prior (200 DGN-AM steps each) on the lent GPU, end to end.
# Runs on the device machine from the repo root, with .gpu/ carried (only its EfficientNet-Lite0
# wheel is used).  usage: bash scripts/gpu_throughput.sh [BATCH [UNITS [more `dgnam visualize` options]]]
# CPU dry run: DEVICE=cpu OUT=/tmp/tp bash scripts/gpu_throughput.sh 2 logits:0-1 --steps 2
set -euo pipefail
batch=${1:-500}
units=${2:-logits:0-999}
out=${OUT:-/tmp/dgnam_gpu_out}
device=${DEVICE:-cuda}
mkdir -p "$out"
python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt" || true
run=/tmp/dgnam_throughput_run
rm -rf "$run"
start=$(date +%s.%N)
python3 -m dgnam.cli visualize --unit "$units" --generator lite0_blocks7_conv_resize --batch-size "$batch" \
    --device "$device" --out "$run" --quiet "${@:3}" 2>&1 | tee "$out/visualize.txt"
end=$(date +%s.%N)
# the images stay on the device (1000 PNGs would not come back); the record and a few images do
cp "$run/results.json" "$out/"
find "$run" -maxdepth 1 -name 'logits_*.png' | sort | head -16 | xargs -r cp -t "$out/"
python3 - "$out/results.json" "$start" "$end" <<'PY' | tee "$out/summary.txt"
import json, sys
record = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
timing = record.get("timing", {})
print(json.dumps({"end_to_end_seconds": round(wall, 1), "units": len(record.get("units", [])), "timing": timing}))
PY
