# Acceptance run on real images: a reduced HIRI-ViT trained from scratch with EMA distillation (Mixup/CutMix, the EMA
# teacher's mixed probability maps) on object crops cut from COCO boxes, CPU, a few minutes. Build the crops first:
#   .venv/bin/python tools/coco_box_crops.py ../shared/data/coco_mini/annotations/instances_train2017.json \
#       ../shared/data/coco_mini/train2017 data/coco_crops
#   python tools/train.py configs/hiri_vit/acceptance/hiri_vit_ema_distill_coco_crops.py
# The recipe is the ImageNet one (../hiri_vit_s_in1k_448.py) scaled down: 128 px images (a 2x2 map for the teacher),
# a small arch, a faster EMA (momentum 0.02: a ~50-iteration horizon instead of 10k) and 40 short epochs.
_base_ = '../hiri_vit_s_in1k_448.py'

data_root = 'data/coco_crops'
img_size = 128
num_classes = 4
model = dict(
    data_preprocessor=dict(num_classes=num_classes),
    backbone=dict(
        _delete_=True,
        type='HIRIViT',
        arch=dict(channels=[16, 32, 48, 64, 96], depths=[2, 2, 1, 2, 1], expansions=[8, 8, 4, 4, 4],
                  num_heads=[0, 0, 0, 2, 3], sr_ratios=[1, 1, 1, 1, 1], stem_channels=16),
        drop_path_rate=0.0),
    head=dict(num_classes=num_classes, in_channels=96))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),  # the orientation policy (contributing.md)
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=(img_size, img_size), backend='pillow', interpolation='bicubic'),
    dict(type='PackInputs'),
]
dataset = dict(type='CustomDataset', data_root=data_root, with_label=True)
train_dataloader = dict(batch_size=16, num_workers=2, persistent_workers=False,
                        dataset=dict(_delete_=True, **dataset, data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, num_workers=0, persistent_workers=False,
                      dataset=dict(_delete_=True, **dataset, data_prefix='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_epochs = 40
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
optim_wrapper = dict(optimizer=dict(lr=2e-3, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=3, end=max_epochs),
]
auto_scale_lr = dict(enable=False)
custom_hooks = [
    dict(type='EMAHook', momentum=0.02, update_buffers=True, priority='ABOVE_NORMAL'),
    dict(type='EMADistillHook'),
]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=20, max_keep_ckpts=1))
