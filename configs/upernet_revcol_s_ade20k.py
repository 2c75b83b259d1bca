# RevCol-S UPerNet 160k on ADE20K, 512x512 (official recipe). Official: 47.9 mIoU ss / 49.0 ms.
_base_ = './upernet_revcol_t_ade20k.py'
pretrained = 'checkpoints/revcol_small_1k.pth'
model = dict(backbone=dict(arch='small', init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
optim_wrapper = dict(optimizer=dict(lr=4e-5), paramwise_cfg=dict(decay_rate=1.0))
