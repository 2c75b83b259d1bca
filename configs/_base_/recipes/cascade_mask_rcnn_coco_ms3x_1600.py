# Cascade Mask R-CNN 3x on COCO at twice the usual input, the HIRI-ViT detection setting (paper Sec. 5.2):
# multi-scale training with the shorter side in [960, 1600] (longer <= 2666), test at 1600, AdamW lr 1e-4 wd 0.05
# without weight decay on norms and biases, 2 images x 8 GPUs, 36 epochs (mmdet's 3x: the dataset repeated 3 times
# for 12 epochs, steps at 9 and 11). A model config adds the backbone.
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py', '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

# RPN anchors lie inside the image only (allowed_border=0): an image too thin for any anchor is skipped, not fatal
anchor_filter = dict(type='SkipImagesWithoutAnchors', anchor_generator=_base_.model.rpn_head.anchor_generator,
                     allowed_border=_base_.model.train_cfg.rpn.allowed_border)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=[(2666, 960), (2666, 1600)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    anchor_filter,
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=(2666, 1600), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(dataset=dict(pipeline=train_pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
                     paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
auto_scale_lr = dict(enable=False, base_batch_size=16)
