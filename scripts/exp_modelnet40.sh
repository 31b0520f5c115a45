#!/usr/bin/env bash
# The CPU-sized ModelNet40 protocol of the README (issues 2 and 3): plain vs canonicalized PointNet,
# and the adaptation of a pretrained PointNet with and without the prior.
#   bash scripts/exp_modelnet40.sh [ROOT] [OUT]
# Environment: EPOCHS (default 6), POINTS (default 512), ADAPT_EPOCHS (default 3), THREADS (default 2).
set -euo pipefail
ROOT=${1:-../shared/data/modelnet40_hdf5_1024}
OUT=${2:-runs/mn40}
EPOCHS=${EPOCHS:-6}; POINTS=${POINTS:-512}; ADAPT_EPOCHS=${ADAPT_EPOCHS:-3}; THREADS=${THREADS:-2}
PC=".venv/bin/pointcanon --threads $THREADS"
COMMON="--dataset modelnet40 --data-root $ROOT --num-points $POINTS --epochs $EPOCHS --batch-size 32 --seed 0"
run() { local out=$1; shift; [ -f "$OUT/$out/eval.json" ] && return 0; /usr/bin/time -f "$out: %e s" $PC "$@" --out "$OUT/$out"; }
run plain_z   train $COMMON --canonicalizer none --train-rotation z
run canon_z   train $COMMON --canonicalizer vn   --train-rotation z
run adapt_prior   adapt --pretrained "$OUT/plain_z/last.pt" --epochs "$ADAPT_EPOCHS" --prior upright --prior-weight 1.0
run adapt_noprior adapt --pretrained "$OUT/plain_z/last.pt" --epochs "$ADAPT_EPOCHS" --prior none
run plain_so3 train $COMMON --canonicalizer none --train-rotation so3
run canon_so3 train $COMMON --canonicalizer vn   --train-rotation so3
.venv/bin/python scripts/report_modelnet40.py "$OUT"
