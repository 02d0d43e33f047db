#!/usr/bin/env bash
# Prior v2 (issue 16), the whole training in one command, resumable at every stage (run it again after an
# interruption: each stage continues from its checkpoint and a finished stage is skipped).
#   stage 1: configs/priors/lite0_blocks7_224.json, steps 0-2000 (warm start from the shipped 128-px prior,
#            pixel + feature + adversarial losses with the patch discriminator)
#   stage 2: configs/priors/lite0_blocks7_224_spec.json, steps 2000-5000 from stage 1's checkpoint (G, D and
#            both Adam states), the same losses + the spectral term (w_spec 0.01) against the blur
# Usage: bash scripts/train_prior_v2.sh POOL OUT      (POOL: `dgnam pool build POOL --size 224 --crop-density 7
#        --max-crops 100 --composites 1500`; exports every 100 steps under OUT/stage*/priors/)
set -euo pipefail
pool=${1:?usage: train_prior_v2.sh POOL OUT}
out=${2:?usage: train_prior_v2.sh POOL OUT}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m dgnam.cli train-generator --pool "$pool" --out "$out/stage1" --config configs/priors/lite0_blocks7_224.json --resume
mkdir -p "$out/stage2"
[ -f "$out/stage2/checkpoint.pt" ] || cp "$out/stage1/checkpoint.pt" "$out/stage2/checkpoint.pt"
python -m dgnam.cli train-generator --pool "$pool" --out "$out/stage2" --config configs/priors/lite0_blocks7_224_spec.json --resume
