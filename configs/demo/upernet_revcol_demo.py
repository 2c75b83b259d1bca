# Demo: a small RevCol (2 columns) UPerNet trained from scratch on the embedded synthetic shapes dataset
# (mmrevcol/demo_data.py, 128x128, background + 3 classes) on CPU in a few minutes (1500 iters of batch 4). Run by tools/demo.py; alone:
#   python -m mmrevcol.demo_data && python tools/train.py configs/demo/upernet_revcol_demo.py
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/default_runtime.py',
    '../_base_/runtime/safety.py',
]
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

data_root = 'data/revcol_demo/'
classes = ('background', 'circle', 'square', 'triangle')
palette = [[0, 0, 0], [220, 20, 60], [0, 128, 255], [60, 200, 60]]
num_classes = len(classes)
channels = [32, 64, 128, 256]
max_iters = 1500
crop_size = (128, 128)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN when not distributed (mmengine) or without CUDA

model = dict(
    data_preprocessor=dict(size=None, size_divisor=32),  # the demo images need no padding
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch=dict(channels=channels, layers=[1, 1, 2, 1], num_columns=2),
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),  # no pretrained checkpoint for the demo: from scratch
    decode_head=dict(
        in_channels=channels,
        channels=64,
        num_classes=num_classes,
        # background is ~88% of the pixels: down-weight it so the shapes are learnt within minutes
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         class_weight=[0.5, 1.0, 1.0, 1.0])),
    auxiliary_head=dict(in_channels=channels[2], in_index=2, channels=32, num_classes=num_classes),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=dict(classes=classes, palette=palette),
    img_suffix='.png',
    seg_map_suffix='.png',
    reduce_zero_label=False)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),  # the orientation policy (contributing.md)
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [t for t in train_pipeline if t['type'] != 'RandomFlip']  # no augmentation
loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    **loader, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(
    _base_.safety_hooks,  # the run's safety (configs/_base_/runtime/safety.py)
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(_base_.safety_hooks.checkpoint, by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    # mmseg's schedules bring it, the runtime base does not; upstream `tools/test.py --show-dir` requires it
    visualization=dict(type='SegVisualizationHook', interval=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=True)  # deterministic algorithms where torch has them (GPU)
env_cfg = dict(cudnn_benchmark=False)
