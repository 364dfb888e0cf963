#!/usr/bin/env bash
# Rebuilds docs/results.md, docs/benchmarks.md's end-to-end section and the shipped checkpoints (default,
# default-2d, headpose, the dlib-pretrained calibration) from nothing but this repo. Hours on 2 CPU cores:
# 17 training runs (each run's metrics.jsonl logs its samples/s), the head-pose net and the evaluations.
# Every step skips work already done (existing data is regenerated identically; finished runs are kept).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=data/synth200
RUNS=runs/ablation
# The ablation of docs/results.md sections 1-5 was trained and evaluated on ground-truth ("oracle") crops,
# as it was run before training moved to the Verifier's own pipeline crops (TrainConfig.align).
ORACLE="--set align=oracle --set eval.align=oracle"  # configs/synth-cpu.yaml says so too
pose3dfr synth --out "$DATA" --identities 200 --seed 0 --workers 2
pose3dfr ablate --data "$DATA" --out "$RUNS" --seeds 3 --config configs/synth-cpu.yaml $ORACLE \
    --variants baseline-2d full jam je
# What we tried first: the 2D-only model without imprinted class centres (random margin head).
[ -f runs/no-imprint/model.safetensors ] || pose3dfr train --preset baseline-2d --config configs/synth-cpu.yaml \
    --set imprint_head=false $ORACLE --data "$DATA" --out runs/no-imprint
pose3dfr eval --checkpoint runs/no-imprint/model.safetensors --data "$DATA" --align oracle \
    --json runs/no-imprint/test_eval.json
# What we tried next: the full method with a separate 3D head (share_head=false; docs/results.md).
pose3dfr ablate --data "$DATA" --out runs/ablation-separate-head --seeds 3 --config configs/synth-cpu.yaml $ORACLE \
    --variants full --set model_overrides.share_head=false
python scripts/make_results.py --data "$DATA" --ablation "$RUNS" --out docs/results.md

# The head-pose / profile-landmark network the detector uses beyond MediaPipe's range (docs/headpose.md).
[ -f checkpoints/headpose.safetensors ] || pose3dfr train-headpose --out runs/headpose --identities 240 --workers 2 \
    --time-budget-min 20 --threads 2

# The shipped twins: seed 0 of each (chosen before training, not the best seed) of the ablation above. The
# default is the full method with a separate 3D head: with the shared head (the paper's) it lost to the 2D-only
# twin in every bin (docs/results.md, sections 3 and 5).
TRAIN="pose3dfr train --config configs/synth-cpu.yaml --data $DATA --seed 0"
pose3dfr publish --run runs/ablation-separate-head/full/seed0 --name default --data "$DATA" --twin default-2d \
    --command "$TRAIN --preset full --set model_overrides.share_head=false --out runs/ablation-separate-head/full/seed0"
pose3dfr publish --run "$RUNS/baseline-2d/seed0" --name default-2d --data "$DATA" --twin default \
    --command "$TRAIN --preset baseline-2d --out $RUNS/baseline-2d/seed0"
# What we tried for the profile work: the same twins trained on the Verifier's own pipeline crops (not shipped:
# real-photo separation fell below the pretrained network's; docs/results.md, section 6).
PIPELINE="--set align=pipeline --set eval.align=pipeline"
[ -f runs/pipeline/baseline-2d/seed0/model.safetensors ] || \
    $TRAIN --preset baseline-2d $PIPELINE --out runs/pipeline/baseline-2d/seed0
[ -f runs/pipeline/full-separate-head/seed0/model.safetensors ] || \
    $TRAIN --preset full --set model_overrides.share_head=false $PIPELINE --out runs/pipeline/full-separate-head/seed0
# dlib's pretrained network has no training run: its thresholds on the same validation renders.
pose3dfr calibrate --checkpoint dlib-pretrained --data "$DATA" --split val \
    --out checkpoints/dlib-pretrained.calibration.json

# End to end by yaw, every system (docs/benchmarks.md); the peers need `pip install --no-deps -r requirements-bench.txt`.
python benchmarks/end_to_end.py --data "$DATA" --threads 2 --pose-model checkpoints/headpose.safetensors \
    --extra pipeline-trained=runs/pipeline/full-separate-head/seed0/model.safetensors \
    --extra pipeline-trained-2d=runs/pipeline/baseline-2d/seed0/model.safetensors
