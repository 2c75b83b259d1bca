# RevCol-S Cascade Mask R-CNN 3x on COCO (official recipe). Official: 52.6 AP box / 45.5 AP mask.
_base_ = './cascade_revcol_t_coco.py'
pretrained = 'checkpoints/revcol_small_1k.pth'
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.4, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(optimizer=dict(lr=2e-4), paramwise_cfg=dict(decay_rate=0.85))
