# SLaK-T RetinaNet 1x on COCO (not an official SLaK recipe: mmdet's Swin/PVT RetinaNet setting, AdamW with the
# SLaK stage-wise lr decay). Stages 1-3 (strides 8/16/32) feed the FPN; P6/P7 come from extra convs.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/backbones/slak_t.py']

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.slak_backbone, drop_path_rate=0.2, out_indices=(1, 2, 3)),
    neck=dict(in_channels=_base_.slak_channels[1:], start_level=0, num_outs=5))

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='BackboneLayerDecayOptimizerConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'),
    clip_grad=None)

custom_hooks = [_base_.slak_fixed_mask_hook]
