# RevCol-L (ImageNet-22k) Mask2Former 160k on ADE20K, 640x640 (not an official RevCol recipe: mmseg's Mask2Former
# Swin 640 setting, _base_/recipes/mask2former_ade20k_640_160k.py), drop path 0.3.
_base_ = ['./_base_/recipes/mask2former_ade20k_640_160k.py', './_base_/backbones/revcol_l.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.3),
             decode_head=dict(in_channels=_base_.backbone_channels))
