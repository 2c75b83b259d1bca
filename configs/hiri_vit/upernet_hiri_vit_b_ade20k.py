# UPerNet 160k on ADE20K with HIRI-ViT-B: the recipe of upernet_hiri_vit_s_ade20k.py
# (_base_/recipes/upernet_ade20k_160k_1024.py) with the B backbone.
_base_ = ['../_base_/recipes/upernet_ade20k_160k_1024.py', '../_base_/backbones/hiri_vit_b.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))  # stage 4
