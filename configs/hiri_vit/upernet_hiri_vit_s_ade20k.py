# UPerNet 160k on ADE20K with HIRI-ViT-S (paper Sec. 5.3; _base_/recipes/upernet_ade20k_160k_1024.py: Swin's UPerNet
# recipe at twice Swin's input, 1024x1024 crops): the decoder sees stages 2-5 (strides 8-64).
_base_ = ['../_base_/recipes/upernet_ade20k_160k_1024.py', '../_base_/backbones/hiri_vit_s.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))  # stage 4
