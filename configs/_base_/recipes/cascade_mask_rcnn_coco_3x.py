# Cascade Mask R-CNN 3x on COCO: mmdet's ConvNeXt-T recipe (the official ConvNeXt one, which SLaK copies):
# GIoU 4conv1fc heads, DETR-style multi-scale 480-800 + crop, 36 epochs with steps at 27/33, 2 images x 8 GPUs,
# AdamW lr 2e-4 wd 0.05 with AMP. A model config adds the backbone (and its layer-decay constructor).
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    '../runtime/safety.py',
]
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # 2 images per GPU x 8 GPUs


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


# RPN anchors lie inside the image only (allowed_border=0): an image too thin for any anchor is skipped, not fatal
anchor_filter = dict(type='SkipImagesWithoutAnchors', anchor_generator=_base_.model.rpn_head.anchor_generator,
                     allowed_border=_base_.model.train_cfg.rpn.allowed_border)
train_pipeline = _oriented(_base_.train_dataloader.dataset.pipeline)
train_pipeline.insert(-1, anchor_filter)  # on the final image shape, before PackDetInputs
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
