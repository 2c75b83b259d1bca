# UPerNet 160k on ADE20K with HIRI-ViT-B: the recipe of upernet_hiri_vit_s_ade20k.py with the B backbone.
_base_ = ['./upernet_hiri_vit_s_ade20k.py', '../_base_/backbones/hiri_vit_b.py']

model = dict(
    backbone={{_base_.hiri_vit_b}},
    decode_head=dict(in_channels={{_base_.hiri_vit_b_channels}}),
    auxiliary_head=dict(in_channels=384))  # stage 4
