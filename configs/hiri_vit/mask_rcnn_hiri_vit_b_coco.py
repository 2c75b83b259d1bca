# Mask R-CNN 1x with HIRI-ViT-B: the recipe of mask_rcnn_hiri_vit_s_coco.py with the B backbone.
_base_ = ['./mask_rcnn_hiri_vit_s_coco.py', '../_base_/backbones/hiri_vit_b.py']

model = dict(backbone={{_base_.hiri_vit_b}}, neck=dict(in_channels={{_base_.hiri_vit_b_channels}}))
