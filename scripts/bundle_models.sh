#!/usr/bin/env bash
# Regenerate the pretrained models bundled in src/vcinr/models/ (docs/models.md).
#
#   scripts/bundle_models.sh                 # all three, with the CPU budgets the bundled ones had
#   BUDGET_SCALE=10 DEVICE=cuda scripts/bundle_models.sh image   # longer, on a GPU
#
# Trains into runs/bundled/<name>/ (re-running resumes), fits the quality levels, then copies
# the model (config.json, model.safetensors) and its codecs - not the latents cache or
# checkpoints - into src/vcinr/models/<name>/. Run from the repository root, with the data in
# ../shared/data (the paths recorded in the configs).
set -euo pipefail
cd "$(dirname "$0")/.."
VCINR=${VCINR:-.venv/bin/vcinr}
DEVICE=${DEVICE:-cpu}
SCALE=${BUDGET_SCALE:-1}
CODEC_STEPS=${CODEC_STEPS:-400}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

# name | preset | training seconds | extra train options | fit-codec lambdas
MODELS=(
  "image|image-tiny|1200||0.0003 0.003 0.03"
  "audio|librispeech-tiny|480|--set train.outer_lr=3e-4|0.01 0.1 1"
  "era5|era5-tiny|240||0.001 0.01 0.1"
)

for entry in "${MODELS[@]}"; do
  IFS='|' read -r name preset seconds extra lambdas <<<"$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  run=runs/bundled/$name
  budget=$(python3 -c "print($seconds * $SCALE)")
  # shellcheck disable=SC2086
  "$VCINR" train --config "$preset" --out "$run" --time-budget "$budget" --steps 1000000 --device "$DEVICE" $extra --quiet
  # shellcheck disable=SC2086
  "$VCINR" fit-codec --model "$run" --lambdas $lambdas --bits 4 6 8 --steps "$CODEC_STEPS" --lr 1e-3 \
    --max-items 2000 --quiet
  dest=src/vcinr/models/$name
  rm -rf "$dest"
  mkdir -p "$dest/codecs"
  cp "$run/config.json" "$run/model.safetensors" "$dest/"
  for level in "$run"/codecs/learned-lambda*.json "$run"/codecs/uniform-*bit.json; do
    cp "$level" "${level%.json}.safetensors" "$dest/codecs/"
  done
  echo "bundled $name -> $dest ($(du -sh "$dest" | cut -f1))"
done
"$VCINR" models
