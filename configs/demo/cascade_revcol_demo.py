# Demo: a small RevCol (2 columns) Cascade Mask R-CNN trained from scratch on the embedded synthetic shapes
# dataset (mmrevcol/demo_data.py, 128x128 images, 3 classes) on CPU in a few minutes. Run by tools/demo.py; alone:
#   python -m mmrevcol.demo_data && python tools/train.py configs/demo/cascade_revcol_demo.py
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/runtime/safety.py',
]
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

data_root = 'data/revcol_demo/'
classes = ('circle', 'square', 'triangle')
num_classes = len(classes)
channels = [16, 32, 64, 128]
fpn = 64  # FPN / head width (256 in the full-size configs)
max_iters = 300
image_size = (128, 128)
anchor_generator = dict(type='AnchorGenerator', scales=[4], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64])


def _bbox_head(stds):
    return dict(
        type='Shared2FCBBoxHead',
        in_channels=fpn,
        fc_out_channels=256,
        roi_feat_size=7,
        num_classes=num_classes,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
        reg_class_agnostic=True,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


def _rcnn(iou):
    return dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                      match_low_quality=False, ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
        mask_size=28,
        pos_weight=-1,
        debug=False)


model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch=dict(channels=channels, layers=[1, 1, 2, 1], num_columns=2),
        drop_path_rate=0.0,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),  # no pretrained checkpoint for the demo: from scratch
    neck=dict(in_channels=channels, out_channels=fpn, num_outs=5),
    rpn_head=dict(in_channels=fpn, feat_channels=fpn, anchor_generator=anchor_generator),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn),
        bbox_head=[_bbox_head([0.1, 0.1, 0.2, 0.2]), _bbox_head([0.05, 0.05, 0.1, 0.1]),
                   _bbox_head([0.033, 0.033, 0.067, 0.067])],
        mask_roi_extractor=dict(out_channels=fpn),
        mask_head=dict(in_channels=fpn, conv_out_channels=fpn, num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=[_rcnn(0.5), _rcnn(0.6), _rcnn(0.7)]),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))
del _bbox_head, _rcnn

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),  # the orientation policy (contributing.md)
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    # RPN anchors lie inside the image only (train_cfg.rpn.allowed_border=0): skip an image too thin for any anchor
    dict(type='SkipImagesWithoutAnchors', anchor_generator=anchor_generator,
         allowed_border=_base_.model.train_cfg.rpn.allowed_border),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
dataset = dict(type='CocoDataset', data_root=data_root, metainfo=dict(classes=classes))
loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, sampler=dict(type='InfiniteSampler', shuffle=True), batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(**dataset, ann_file='annotations/instances_train.json', data_prefix=dict(img='img_dir/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    **loader, drop_last=False, sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, ann_file='annotations/instances_val.json', data_prefix=dict(img='img_dir/val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-5, by_epoch=False, begin=0, end=max_iters),
]
default_hooks = dict(
    _base_.safety_hooks,  # the run's safety (configs/_base_/runtime/safety.py)
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(_base_.safety_hooks.checkpoint, by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0, deterministic=True)  # deterministic algorithms where torch has them (GPU)
env_cfg = dict(cudnn_benchmark=False)
auto_scale_lr = dict(enable=False, base_batch_size=4)
