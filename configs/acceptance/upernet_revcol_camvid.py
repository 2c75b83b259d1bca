# Acceptance run on real images: the small demo RevCol UPerNet (2 columns, from scratch) on CamVid
# (../shared/data/camvid: 123 train / 101 val, 480x360, 11 classes, 11 = unlabelled), CPU, images at half size.
#   python tools/train.py configs/acceptance/upernet_revcol_camvid.py
# Other data location: --cfg-options train_dataloader.dataset.data_root=DIR val_dataloader.dataset.data_root=DIR
#   test_dataloader.dataset.data_root=DIR
_base_ = '../demo/upernet_revcol_demo.py'

data_root = '../shared/data/camvid'
classes = ('Sky', 'Building', 'Pole', 'Road', 'Pavement', 'Tree', 'SignSymbol', 'Fence', 'Car', 'Pedestrian',
           'Bicyclist')
palette = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [60, 40, 222], [128, 128, 0],
           [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
num_classes = len(classes)
ignore_index = 11
max_iters = 1200
scale = (240, 180)
crop_size = (160, 160)

model = dict(
    data_preprocessor=dict(size=crop_size, size_divisor=None, seg_pad_val=ignore_index),
    decode_head=dict(
        num_classes=num_classes,
        ignore_index=ignore_index,
        loss_decode=dict(_delete_=True, type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(num_classes=num_classes, ignore_index=ignore_index),
    test_cfg=dict(mode='whole'))

dataset = dict(_base_.dataset, data_root=data_root, metainfo=dict(classes=classes, palette=palette), img_suffix='.jpg',
               ignore_index=ignore_index)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),  # the orientation policy (contributing.md)
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomResize', scale=scale, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75, ignore_index=ignore_index),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(_delete_=True, **dataset, data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    dataset=dict(_delete_=True, **dataset, data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'], ignore_index=ignore_index)
test_evaluator = val_evaluator

train_cfg = dict(max_iters=max_iters, val_interval=300)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=300, max_keep_ckpts=1))
