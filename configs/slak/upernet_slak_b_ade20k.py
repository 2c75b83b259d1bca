# SLaK-B UPerNet 160k on ADE20K, 512x512: the recipe of upernet_slak_t_ade20k.py with the SLaK-B fragment (drop path
# 0.4). Official: 50.0 mIoU.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/backbones/slak_b.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]
