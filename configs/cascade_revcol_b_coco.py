# RevCol-B (ImageNet-1k) Cascade Mask R-CNN 3x on COCO (official recipe). Official: 53.0 AP box / 45.9 AP mask.
# With the ImageNet-22k checkpoint (revcol_base_22k.pth) the official recipe uses lr 1e-4 (55.0 / 47.5).
_base_ = './cascade_revcol_t_coco.py'
pretrained = 'checkpoints/revcol_base_1k.pth'
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.4, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[72, 144, 288, 576]))
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.9))
