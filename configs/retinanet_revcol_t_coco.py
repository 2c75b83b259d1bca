# RevCol-T RetinaNet 1x on COCO (not an official RevCol recipe: mmdet's Swin/PVT RetinaNet setting, AdamW with
# RevCol layer decay). Levels 1-3 (strides 8/16/32) feed the FPN; P6/P7 come from extra convs on the input.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

pretrained = 'checkpoints/revcol_tiny_1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch='tiny',
        drop_path_rate=0.2,
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512], start_level=0, num_outs=5))

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='RevColLayerDecayOptimizerConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.85, decay_type='layer_wise'),
    clip_grad=None)
