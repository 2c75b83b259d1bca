# RevCol-B (ImageNet-1k) UPerNet 160k on ADE20K, 512x512 (official recipe). Official: 49.0 mIoU ss / 50.1 ms.
_base_ = './upernet_revcol_t_ade20k.py'
pretrained = 'checkpoints/revcol_base_1k.pth'
channels = [72, 144, 288, 576]
model = dict(
    backbone=dict(arch='base', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=channels),
    auxiliary_head=dict(in_channels=channels[2]))
optim_wrapper = dict(optimizer=dict(lr=4e-5), paramwise_cfg=dict(decay_rate=1.0))
