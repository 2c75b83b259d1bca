# Acceptance run on real images: the small demo RevCol Cascade Mask R-CNN (2 columns, from scratch) on the 80-image
# COCO subset of ../shared/data/coco_mini, person only, images resized to a 320 long side, CPU. There is no val
# split in coco_mini: AP is measured on the same 80 images (it shows learning, not generalisation).
#   python tools/train.py configs/acceptance/cascade_revcol_coco_mini_person.py
# Other data location: --cfg-options train_dataloader.dataset.data_root=DIR/ val_dataloader.dataset.data_root=DIR/
#   test_dataloader.dataset.data_root=DIR/ val_evaluator.ann_file=DIR/annotations/instances_train2017.json
#   test_evaluator.ann_file=DIR/annotations/instances_train2017.json
_base_ = '../demo/cascade_revcol_demo.py'

data_root = '../shared/data/coco_mini/'
classes = ('person', )
max_iters = 400
image_size = (320, 320)

fpn = 64


def _bbox_head(stds):  # the demo's heads with one class (a list in a config is replaced, not merged)
    return dict(
        type='Shared2FCBBoxHead',
        in_channels=fpn,
        fc_out_channels=256,
        roi_feat_size=7,
        num_classes=len(classes),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=stds),
        reg_class_agnostic=True,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[8])),
    roi_head=dict(
        bbox_head=[_bbox_head([0.1, 0.1, 0.2, 0.2]), _bbox_head([0.05, 0.05, 0.1, 0.1]),
                   _bbox_head([0.033, 0.033, 0.067, 0.067])],
        mask_head=dict(num_classes=len(classes))))
del _bbox_head

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
data = dict(
    data_root=data_root,
    metainfo=dict(classes=classes),
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img='train2017/'))
train_dataloader = dict(batch_size=2, dataset=dict(**data, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(**data, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_train2017.json')
test_evaluator = val_evaluator

train_cfg = dict(max_iters=max_iters, val_interval=100)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-5, by_epoch=False, begin=0, end=max_iters),
]
default_hooks = dict(checkpoint=dict(interval=100, max_keep_ckpts=1))
