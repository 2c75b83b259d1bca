# RevCol-L (ImageNet-22k) Cascade Mask R-CNN 3x on COCO (official recipe). Official: 55.9 AP box / 48.4 AP mask.
_base_ = './cascade_revcol_t_coco.py'
pretrained = 'checkpoints/revcol_large_22k.pth'
model = dict(
    backbone=dict(arch='large', drop_path_rate=0.5, init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512, 1024]))
optim_wrapper = dict(optimizer=dict(lr=1e-4), paramwise_cfg=dict(decay_rate=0.85))
