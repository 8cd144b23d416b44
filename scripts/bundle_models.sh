#!/usr/bin/env bash
# Regenerate the pretrained models bundled in src/vcinr/models/ (docs/models.md).
#
#   scripts/bundle_models.sh                 # all three, with the CPU budgets the bundled ones had
#   BUDGET_SCALE=10 DEVICE=cuda scripts/bundle_models.sh image   # longer, on a GPU
#   INIT=RUN scripts/bundle_models.sh image   # start the first stage from RUN's weights (--init); to continue
#                                             # the bundled model, train its last stage's config with --init instead
#
# A model's config may be stages, "A.yaml@STEPS;B.yaml": each later stage is a new run that
# starts from the previous stage's weights (--init), as the image model was made (2,500 steps
# of the recipe, then 5,000 and 3,000 with a weight average, docs/models.md); the last stage is bundled.
# "@STEPS" sets train.steps, so that stage's cosine decays over STEPS (the original run planned
# 5,000 and was stopped at 2,500): a close reproduction, not a bit-identical one.
#
# Trains into runs/bundled/<name>/ (re-running resumes), stores the weights in half precision
# where the entry says so (before fitting: codecs belong to the exact weights), fits the quality
# levels, then copies the model (config.json, model.safetensors) and its codecs - not the
# latents cache or checkpoints - into src/vcinr/models/<name>/. Run from the repository root,
# with the data in ../shared/data (the paths recorded in the configs).
set -euo pipefail
cd "$(dirname "$0")/.."
VCINR=${VCINR:-.venv/bin/vcinr}
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cpu}
SCALE=${BUDGET_SCALE:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
# the tiny era5 model's levels were fitted with the schedule fit-codec had before its warm-up existed
OLD_SCHEDULE="--warmup-steps 0 --steps 400 --lr 1e-3 --final-lr-fraction 1 --max-points 100000000"

# name | config | training seconds | extra train options | half precision | fit-codec options
# (image: 2,500 + 5,000 + 3,000 steps, about 2.7 CPU-hours, and about 4 CPU-hours of codec fitting; audio: 3,000 + 4,000 + 4,000 steps on 400-sample patches, then 4,000 on 200-sample ones and 4,000 on 100-sample ones, 5.1 CPU-hours, and about 0.6 CPU-hours of codec fitting; the time budget
# only caps each stage)
MODELS=(
  "image|experiments/recipe/w128d6-phi256-p16-unitphi0-lr3e-4.yaml@2500;experiments/recipe/w128d6-phi256-p16-continue-ema.yaml;experiments/recipe/w128d6-phi256-p16-continue2-ema.yaml|100000||half|--lambdas 0.001 0.003 0.01 0.03 0.1 --bits 3 4 5 6 --width 256 --max-items 8000 --steps 9600"
  "audio|experiments/recipe/audio-w128d6-phi256-p400-lr2000-ema.yaml;experiments/recipe/audio-w128d6-phi256-p400-allclips.yaml;experiments/recipe/audio-w128d6-phi256-p400-allclips-continue.yaml;experiments/recipe/audio-w128d6-phi256-p200-from-p400.yaml;experiments/recipe/audio-w128d6-phi256-p100-from-p200.yaml|100000||half|--lambdas 0.03 0.1 0.3 1 --bits 4 6 8 --width 256 --max-items 16000 --steps 2400"
  "era5|era5-tiny|240|--steps 1000000||--lambdas 0.001 0.01 0.1 --bits 4 6 8 --max-items 2000 $OLD_SCHEDULE"
)

for entry in "${MODELS[@]}"; do
  IFS='|' read -r name config seconds extra half fit <<<"$entry"
  if [ $# -gt 0 ] && [[ " $* " != *" $name "* ]]; then continue; fi
  budget=$(python3 -c "print($seconds * $SCALE)")
  init=()
  if [ -n "${INIT:-}" ]; then init=(--init "$INIT"); fi
  IFS=';' read -r -a stages <<<"$config"
  for stage in "${!stages[@]}"; do
    IFS='@' read -r stage_config stage_steps <<<"${stages[$stage]}"
    run=runs/bundled/$name
    if [ "$stage" -lt $((${#stages[@]} - 1)) ]; then run=runs/bundled/$name-stage$stage; fi
    steps=()
    if [ -n "$stage_steps" ]; then steps=(--steps "$stage_steps"); fi
    # shellcheck disable=SC2086
    "$VCINR" train --config "$stage_config" --out "$run" --time-budget "$budget" --device "$DEVICE" "${init[@]}" \
      "${steps[@]}" $extra --quiet
    init=(--init "$run")
  done
  if [ -n "$half" ]; then
    "$PYTHON" -c "import sys; from vcinr.meta.model import store_half_precision; store_half_precision(sys.argv[1])" "$run"
  fi
  # shellcheck disable=SC2086
  "$VCINR" fit-codec --model "$run" $fit --quiet
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
