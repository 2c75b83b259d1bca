# Step 1 of the pre-train -> fine-tune flow (tools/pretrain_finetune.sh, docs/pretraining.md): a reduced RevCol
# classifier (4 columns, so 4 heads and 3 decoders) pre-trained with intermediate supervision on real images, the
# object crops of ../shared/data/coco_mini, on CPU at 64 px. Make the crops first:
#   python tools/dataset_converters/coco_crops.py ../shared/data/coco_mini data/coco_mini_crops
#   python tools/train.py configs/revcol_cls/revcol_mini_coco_crops.py
# The recipe is the ImageNet one (intermediate-supervision weights, AdamW, label smoothing, EMA, reversible columns)
# scaled to a 165-image set: no Mixup/CutMix/RandAugment (they slow a tiny run down), fp32 (CPU), shorter schedule.
_base_ = './_base_/revcol_cls_in1k.py'

data_root = 'data/coco_mini_crops/'
num_classes = 12  # printed by coco_crops.py with its default arguments (meta/classes.txt)
arch = dict(channels=[32, 64, 128, 256], layers=[1, 1, 2, 1], num_columns=4)
img_size = 64
max_epochs = 60

model = dict(
    backbone=dict(arch=dict(_delete_=True, **arch), drop_path_rate=0.1, reversible=True),
    head=dict(num_classes=num_classes, in_channels=arch['channels'][-1]),
    train_cfg=None)
data_preprocessor = dict(num_classes=num_classes)

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),  # the orientation policy (contributing.md)
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='ResizeEdge', scale=img_size * 8 // 7, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
dataset = dict(type='CustomDataset', data_root=data_root, data_prefix='', classes=data_root + 'meta/classes.txt')
train_dataloader = dict(
    batch_size=16, num_workers=2, persistent_workers=False,
    dataset=dict(_delete_=True, ann_file='meta/train.txt', pipeline=train_pipeline, **dataset))
val_dataloader = dict(
    batch_size=32, num_workers=2, persistent_workers=False,
    dataset=dict(_delete_=True, ann_file='meta/val.txt', pipeline=test_pipeline, **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', _delete_=True,
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                                        custom_keys={'.alpha': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=3, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
custom_hooks = [dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL')]  # ~100-iteration horizon
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=1, save_best='auto'))
randomness = dict(seed=0)
