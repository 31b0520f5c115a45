#!/usr/bin/env bash
# Every ModelNet40 / ShapeNetPart table of docs/results.md, on 2 CPU threads:
#   1. canonicalizers trained with a prior alone (`pointcanon fit-canonicalizer`, recipes in configs/:
#      upright_normals = the shipped weights, surface normals; upright = the no-normals canonicalizer;
#      identity), scored on the ModelNet40 test split and on ShapeNetPart's test shapes, and the ablation
#      (VN regression, no tilt grid, refinement);
#   2. a plain PointNet trained with z rotations (EPOCHS, POINTS) and its adaptation with the upright
#      canonicalizer: frozen backbone (assembled, no training), fine-tuned backbone, and no prior;
#   3. a canonicalized PointNet trained from scratch beside the plain one (same epochs, points, seed);
#   4. ShapeNetPart (the shared pseudo-labelled copy): plain vs canonicalized PointNet segmenter;
#   5. the classifiers of 2 and 3 over K up hypotheses, and trained over 3 hypotheses;
#   6. choosing among the up hypotheses for the frozen z-trained backbone: the combination rules over K = 1..6
#      (scripts/hypothesis_rules.py) and the canonicalizer fine-tuned on the task loss of the mixture; the
#      canonicalizer that sees every point (better up axis) in front of the frozen backbone and, from scratch,
#      in front of a new PointNet, both also over their 2 best up hypotheses (evidence rule).
#   7. the shipped canonicalizer (surface normals): adaptation (frozen; fine-tuned; fine-tuned over 3 up hypotheses)
#      and from scratch, each also over K = 2..4 up hypotheses (evidence rule); both trained over 3 hypotheses
#      (adaptation for 5 and for 10 epochs);
#   8. the learned hypothesis selector (pointcanon fit-selector) for both from-scratch classifiers and adaptation (k).
# Then scripts/report_modelnet40.py prints the tables (OUT/tables.md), refreshes the committed summaries of
# docs/results/tables/ from OUT and renders the tables of docs/results.md and README.md from them (review with
# git diff; SUMMARIES=0 skips both). Finished runs are skipped (rerun = resume).
#   bash scripts/exp_modelnet40.sh [OUT]
# Environment: EPOCHS (10), POINTS (512), CANON_STEPS (14000), NORMALS_STEPS (20000), IDENTITY_STEPS (5000), SHAPENET_STEPS (8000),
#              ABLATION_STEPS (3000), ADAPT_EPOCHS (2), LONG_ADAPT_EPOCHS (5), SEG_EPOCHS (10), THREADS (2), MN40, SHAPENET (data folders),
#              SUMMARIES (1; 0: leave docs/ and README.md alone).
# Stages are independent once their inputs exist: to use two cores, run two copies of this script with
# THREADS=1 (each skips what the other finished; do not start the same run twice).
set -euo pipefail
OUT=${1:-runs/mn40}
MN40=${MN40:-../shared/data/modelnet40_hdf5_1024}
SHAPENET=${SHAPENET:-../shared/data/shapenet_part_pseudo_hdf5_2048}
EPOCHS=${EPOCHS:-10}; POINTS=${POINTS:-512}; CANON_STEPS=${CANON_STEPS:-14000}; ABLATION_STEPS=${ABLATION_STEPS:-3000}
IDENTITY_STEPS=${IDENTITY_STEPS:-5000}; NORMALS_STEPS=${NORMALS_STEPS:-20000}; SHAPENET_STEPS=${SHAPENET_STEPS:-8000}
ADAPT_EPOCHS=${ADAPT_EPOCHS:-2}; LONG_ADAPT_EPOCHS=${LONG_ADAPT_EPOCHS:-5}; SEG_EPOCHS=${SEG_EPOCHS:-10}; THREADS=${THREADS:-2}
PY=.venv/bin/python
PC=".venv/bin/pointcanon --threads $THREADS"
mkdir -p "$OUT/canon"
canon() { local out=$1; shift; [ -f "$OUT/canon/$out.pt" ] && return 0
          $PC fit-canonicalizer --out "$OUT/canon/$out.pt" "$@"; }   # $PC's --threads: the fit's threads
# the recipes (configs/canonicalizer_*.json; flags after --config override it)
NORMALS=(--config configs/canonicalizer_upright.json)  # the shipped weights: surface normals, max+mean pooling
NO_NORMALS=(--config configs/canonicalizer_no_normals.json)  # no surface normals, max pooling, 4 subsets at inference
run() { local out=$1; shift; [ -f "$OUT/$out/eval.json" ] && return 0
        local resume=(); [ -f "$OUT/$out/last.pt" ] && resume=(--resume)
        /usr/bin/time -f "$out: %e s" $PC "$@" --out "$OUT/$out" "${resume[@]}"; }

# 1. canonicalizers (prior alone) and the ablation
if [ ! -f "$OUT/canon/upright.pt" ]; then
  canon upright "${NO_NORMALS[@]}" --steps "$CANON_STEPS"
  $PY scripts/choose_views.py "$OUT/canon/upright.pt" --views 2 --threads "$THREADS"   # accuracy/cost curve, keep 2
fi
canon upright256 "${NO_NORMALS[@]}" --steps "$CANON_STEPS" --num-points 256 --views 2   # the scorer sees 256 points instead of 128 (docs/results.md row: trained before the views=1 subset fix)
canon upright_all_ft "${NO_NORMALS[@]}" --init "$OUT/canon/upright.pt" --num-points 1024 --views 1 --steps 3000 --lr 1e-3  # the every-point canonicalizer
if [ ! -f "$OUT/canon/upright_normals.pt" ]; then   # the shipped weights: + surface normals, max+mean pooling
  canon upright_normals "${NORMALS[@]}" --steps "$NORMALS_STEPS"
  $PY scripts/choose_views.py "$OUT/canon/upright_normals.pt" --views 2 --threads "$THREADS"
fi
# both recipes on ShapeNetPart's test shapes (other shapes, sampled by another pipeline, 2,048 points)
[ -f "$OUT/score_shapenet.json" ] || $PY scripts/score_canonicalizer.py "$OUT/canon/upright.pt" \
    "$OUT/canon/upright_normals.pt" --dataset shapenetpart --set normal_points=None --set views=1 \
    --threads "$THREADS" --out "$OUT/score_shapenet.json"
canon identity "${NO_NORMALS[@]}" --steps "$IDENTITY_STEPS" --prior identity
canon abl_vn --kind vn --views 4 --steps "$ABLATION_STEPS" --num-points 256
canon abl_no_tilt "${NO_NORMALS[@]}" --steps "$ABLATION_STEPS" --tilts 0 --local-k 0 --views 1   # ablation rows: 1 point subset
canon abl_tilt "${NO_NORMALS[@]}" --steps "$ABLATION_STEPS" --local-k 0 --views 1
canon abl_local "${NO_NORMALS[@]}" --steps "$ABLATION_STEPS" --views 1
canon abl_local_refine "${NO_NORMALS[@]}" --steps "$ABLATION_STEPS" --refine --views 1

# 2. adaptation of a plain PointNet trained with z rotations
COMMON="--dataset modelnet40 --data-root $MN40 --num-points $POINTS --batch-size 32 --seed 0"
run plain_z train $COMMON --epochs "$EPOCHS" --canonicalizer none --train-rotation z --checkpoint-every 100
run adapt_frozen adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright.pt" \
    --freeze-canonicalizer --epochs 0
run adapt_finetune adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright.pt" \
    --freeze-canonicalizer --finetune-backbone --backbone-lr 1e-4 --epochs "$ADAPT_EPOCHS"
run adapt_noprior adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer candidate --prior none --epochs 0 \
    --canonicalizer.local_k 0 --canonicalizer.normal_k 0 --canonicalizer.views 1 --canonicalizer.pooling max  # as recorded

# 3. from scratch, beside plain_z
run canon_z train $COMMON --epochs "$EPOCHS" --canonicalizer-weights "$OUT/canon/upright.pt" --freeze-canonicalizer \
    --train-rotation z --checkpoint-every 100

# 4. ShapeNetPart (pseudo labels): a canonicalizer for its (z-up mapped) shapes, then the segmenters
canon shapenet_upright --config configs/canonicalizer_shapenetpart.json --data-root "$SHAPENET" --steps "$SHAPENET_STEPS"
SEG="--dataset shapenetpart --data-root $SHAPENET --num-points $POINTS --batch-size 32 --seed 0 --epochs $SEG_EPOCHS"
run seg_plain_z train $SEG --canonicalizer none --train-rotation z
run seg_canon_z train $SEG --canonicalizer-weights "$OUT/canon/shapenet_upright.pt" --freeze-canonicalizer --train-rotation z

# 5. up hypotheses (CanonicalizedModel(hypotheses=K)): the classifiers above evaluated over their K most likely
#    up hypotheses, and a canonicalized PointNet trained over 3 hypotheses (one drawn per shape)
hyp_eval() { local run=$1 k=$2; [ -f "$OUT/$run/hyp$k.json" ] && return 0
             $PC eval "$OUT/$run/last.pt" --hypotheses "$k" --protocols SO3 --out "$OUT/$run/hyp$k.json"; }
# a run over its K most likely up hypotheses, evidence rule (SO(3) only)
evidence_eval() { local run=$1 k=$2; [ -f "$OUT/$run/hyp${k}_evidence.json" ] && return 0
                  $PC eval "$OUT/$run/last.pt" --hypotheses "$k" --hypothesis-rule evidence --protocols SO3 \
                      --out "$OUT/$run/hyp${k}_evidence.json"; }
for k in 1 2 3 4; do for r in canon_z adapt_frozen adapt_finetune; do hyp_eval "$r" "$k"; done; done
run canon_z_hyp3 train $COMMON --epochs "$EPOCHS" --canonicalizer-weights "$OUT/canon/upright.pt" --freeze-canonicalizer \
    --train-rotation z --hypotheses 3 --checkpoint-every 100
for k in 1 2 4; do hyp_eval canon_z_hyp3 "$k"; done

# 6. choosing among the up hypotheses (frozen z-trained backbone)
[ -f "$OUT/hyp_rules_frozen.json" ] || $PY scripts/hypothesis_rules.py --classifier "$OUT/plain_z/last.pt" \
    --canonicalizer "$OUT/canon/upright.pt" --threads "$THREADS" --out "$OUT/hyp_rules_frozen.json"
run adapt_all_frozen adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright_all_ft.pt" \
    --freeze-canonicalizer --epochs 0   # the canonicalizer with the better up axis (every point seen)
run canon_all_z train $COMMON --epochs "$EPOCHS" --canonicalizer-weights "$OUT/canon/upright_all_ft.pt" \
    --freeze-canonicalizer --train-rotation z --checkpoint-every 100   # from scratch behind the better up axis
for r in adapt_all_frozen canon_all_z; do
  hyp_eval "$r" 2
  evidence_eval "$r" 2
done
run adapt_mixture adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright.pt" \
    --hypotheses 6 --hypothesis-training mixture --lr 1e-4 --epochs "$ADAPT_EPOCHS" --checkpoint-every 100

# 7. the canonicalizer with surface normals (better up axis at the shipped cost): adaptation and from scratch
run adapt_normals_frozen adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --epochs 0
run adapt_normals_finetune adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --finetune-backbone --backbone-lr 1e-4 --epochs "$ADAPT_EPOCHS"
run adapt_normals_hyp3 adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --finetune-backbone --backbone-lr 1e-4 --epochs "$ADAPT_EPOCHS" --hypotheses 3 \
    --hypothesis-training sample --hypothesis-rule evidence   # fine-tuned on, and evaluated over, 3 up hypotheses
for r in adapt_normals_frozen adapt_normals_finetune; do for k in 2 3 4; do evidence_eval "$r" "$k"; done; done
run canon_normals_z train $COMMON --epochs "$EPOCHS" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --train-rotation z --checkpoint-every 100
for k in 2 3 4; do evidence_eval canon_normals_z "$k"; done
# both trained on (and evaluated over) the 3 up hypotheses, one drawn per shape: adaptation for longer, from scratch
run adapt_normals_hyp3_long adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --finetune-backbone --backbone-lr 3e-4 --epochs "$LONG_ADAPT_EPOCHS" --hypotheses 3 \
    --hypothesis-training sample --hypothesis-rule evidence --checkpoint-every 100
run adapt_normals_hyp3_10ep adapt --pretrained "$OUT/plain_z/last.pt" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --finetune-backbone --backbone-lr 3e-4 --epochs "$EPOCHS" --hypotheses 3 \
    --hypothesis-training sample --hypothesis-rule evidence --checkpoint-every 100
run canon_normals_z_hyp3 train $COMMON --epochs "$EPOCHS" --canonicalizer-weights "$OUT/canon/upright_normals.pt" \
    --freeze-canonicalizer --train-rotation z --hypotheses 3 --hypothesis-training sample --hypothesis-rule evidence \
    --checkpoint-every 100
for r in adapt_normals_hyp3 adapt_normals_hyp3_long adapt_normals_hyp3_10ep canon_normals_z_hyp3; do
  for k in 2 4; do evidence_eval "$r" "$k"; done
done

# 8. the learned hypothesis selector (pointcanon fit-selector: fitted on the training shapes' outputs, the
#    classifier unchanged) over 3 up hypotheses for both from-scratch classifiers and the adaptation (k), and
#    for the from-scratch ones the rules over K = 1..6
#    with the selector fitted from 3 seeds (scripts/hypothesis_rules.py)
for r in canon_normals_z canon_normals_z_hyp3 adapt_normals_hyp3_10ep; do
  [ -f "$OUT/$r/selector3.pt" ] || $PC fit-selector "$OUT/$r/last.pt" --hypotheses 3 --out "$OUT/$r/selector3.pt"
  [ -f "$OUT/$r/selector3.eval.json" ] || $PC eval "$OUT/$r/selector3.pt"
done
for r in canon_normals_z canon_normals_z_hyp3; do
  [ -f "$OUT/hyp_rules_$r.json" ] || $PY scripts/hypothesis_rules.py --classifier "$OUT/$r/last.pt" \
      --threads "$THREADS" --selector-seeds 0 1 2 --dumps "$OUT/hyp_dumps_$r.pt" --out "$OUT/hyp_rules_$r.json"
done

$PY scripts/report_modelnet40.py "$OUT"
if [ "${SUMMARIES:-1}" != 0 ]; then
  $PY scripts/report_modelnet40.py --runs "$OUT" --write-summaries --render
fi
