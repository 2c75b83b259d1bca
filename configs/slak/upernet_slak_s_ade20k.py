# SLaK-S UPerNet 160k on ADE20K, 512x512: the recipe of upernet_slak_t_ade20k.py with the SLaK-S fragment, drop path
# 0.3. Official: 49.4 mIoU.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/backbones/slak_s.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.3),
             decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]
