# SLaK-T Cascade Mask R-CNN 3x on COCO: the official SLaK detection recipe (a copy of ConvNeXt-T's) on mmdet 3.x.
# From mmdet's ConvNeXt 3x config: GIoU Shared4Conv1FC heads, DETR-style multi-scale 480-800 + crop, AMP,
# 36 epochs (steps 27/33), 2 images x 8 GPUs, AdamW lr 2e-4 wd 0.05, layer-wise decay 0.7 (ConvNeXt ids).
# Official: 51.3 AP box / 44.3 AP mask (300-epoch ImageNet-1k SLaK-T).
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',
    '../_base_/backbones/slak_t.py'
]

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.slak_backbone, drop_path_rate=0.4),
    neck=dict(in_channels=_base_.slak_channels))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='BackboneLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.7, decay_type='layer_wise'),
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))

custom_hooks = [_base_.slak_fixed_mask_hook]
auto_scale_lr = dict(enable=False, base_batch_size=16)
