#!/usr/bin/env bash
# Pre-train a RevCol in mmpretrain -> convert/kernel-pad its checkpoint -> fine-tune UPerNet from it with layer-wise
# LR decay -> evaluate, plus the same fine-tune from scratch for comparison (docs/pretraining.md).
#
#   bash tools/pretrain_finetune.sh                 # the full flow (CPU: about an hour on a quiet 2-core machine)
#   QUICK=1 bash tools/pretrain_finetune.sh         # a few dozen iterations per step: each step starts, loss falls
#
# Environment: PYTHON (default .venv/bin/python if present, else python), WORK (work_dirs/pretrain_flow),
# SHARED (../shared: coco_mini and camvid), KERNEL (7: the 3x3 pre-trained kernels are padded to this),
# SKIP_SCRATCH=1 (no from-scratch comparison run). On a shared/busy CPU machine export OMP_NUM_THREADS=1: with
# more OpenMP threads than free cores a step can take 50x longer (measured: 0.45 s vs 25 s per pre-training step).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
WORK=${WORK:-work_dirs/pretrain_flow}
SHARED=${SHARED:-../shared}
KERNEL=${KERNEL:-7}
QUICK=${QUICK:-0}
CROPS=data/coco_mini_crops
PRE_CFG=configs/revcol_cls/revcol_mini_coco_crops.py
FT_CFG=configs/revcol_cls/upernet_revcol_mini_camvid_ft.py
CAMVID="$SHARED/data/camvid"
CAMVID_OPTS=(train_dataloader.dataset.data_root="$CAMVID" val_dataloader.dataset.data_root="$CAMVID"
             test_dataloader.dataset.data_root="$CAMVID")
PRE_OPTS=()
FT_OPTS=()
if [ "$QUICK" = 1 ]; then
  PRE_OPTS=(train_cfg.max_epochs=4 train_cfg.val_interval=4 default_hooks.logger.interval=2
            default_hooks.checkpoint.interval=4)
  FT_OPTS=(train_cfg.max_iters=60 train_cfg.val_interval=60 default_hooks.logger.interval=5
           default_hooks.checkpoint.interval=60 param_scheduler.1.end=60)
fi

echo "== 0. object crops of coco_mini -> $CROPS"
"$PY" tools/dataset_converters/coco_crops.py "$SHARED/data/coco_mini" "$CROPS"

echo "== 1. pre-train the classifier (intermediate supervision, reversible columns, EMA)"
"$PY" tools/train.py "$PRE_CFG" --work-dir "$WORK/pretrain" --cfg-options "${PRE_OPTS[@]}"
CKPT=$(ls -t "$WORK"/pretrain/best_*.pth 2>/dev/null | head -n 1 || true)
[ -n "$CKPT" ] || CKPT=$(cat "$WORK/pretrain/last_checkpoint")
echo "pre-trained checkpoint: $CKPT"

echo "== 2. backbone weights (EMA, heads dropped), 3x3 kernels padded to ${KERNEL}x${KERNEL}"
rm -f "$WORK/revcol_mini_k$KERNEL.pth"
"$PY" tools/convert_checkpoint.py "$CKPT" "$WORK/revcol_mini_k$KERNEL.pth" --kernel-size "$KERNEL"

echo "== 3. fine-tune UPerNet on CamVid from it (layer-wise LR decay 0.9)"
"$PY" tools/train.py "$FT_CFG" --work-dir "$WORK/finetune_pretrained" --cfg-options \
  model.backbone.kernel_size="$KERNEL" model.backbone.init_cfg.checkpoint="$WORK/revcol_mini_k$KERNEL.pth" \
  "${CAMVID_OPTS[@]}" "${FT_OPTS[@]}"

if [ "${SKIP_SCRATCH:-0}" != 1 ]; then
  echo "== 4. the same fine-tune from scratch"
  "$PY" tools/train.py "$FT_CFG" --work-dir "$WORK/finetune_scratch" --cfg-options \
    model.backbone.kernel_size="$KERNEL" model.backbone.init_cfg=None "${CAMVID_OPTS[@]}" "${FT_OPTS[@]}"
fi

echo "== 5. val mIoU curves (from each run's scalars.json)"
"$PY" - "$WORK" <<'EOF'
import glob, json, os, sys
work = sys.argv[1]
for run in ('pretrain', 'finetune_pretrained', 'finetune_scratch'):
    files = sorted(glob.glob(os.path.join(work, run, '*', 'vis_data', 'scalars.json')))
    if not files:
        continue
    points = []
    for line in open(files[-1]):
        rec = json.loads(line)
        for key in ('mIoU', 'accuracy/top1'):
            if key in rec:
                points.append(f"{rec.get('step', rec.get('iter'))}: {key} {rec[key]:.2f}")
    print(f'{run:<20} ' + ', '.join(points))
EOF
