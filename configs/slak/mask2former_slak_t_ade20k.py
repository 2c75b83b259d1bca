# SLaK-T Mask2Former 160k on ADE20K, 512x512 (not an official SLaK recipe: mmseg's Mask2Former setting,
# _base_/recipes/mask2former_ade20k_160k.py: AdamW lr 1e-4, backbone lr x0.1, no weight decay on norms/embeddings),
# drop path 0.3, the pre-trained sparse pattern kept fixed.
_base_ = ['../_base_/recipes/mask2former_ade20k_160k.py', '../_base_/backbones/slak_t.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.3),
             decode_head=dict(in_channels=_base_.backbone_channels))
custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]
