# Mask R-CNN 1x with HIRI-ViT-S (paper Sec. 5.2; _base_/recipes/mask_rcnn_coco_1x_1600.py: shorter side 1600, AdamW,
# batch 16 = 8 GPUs x 2, 12 epochs). The FPN takes stages 2-5 (strides 8-64 at 1600 = strides 4-32 at 800).
_base_ = ['../_base_/recipes/mask_rcnn_coco_1x_1600.py', '../_base_/backbones/hiri_vit_s.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), neck=dict(in_channels=_base_.backbone_channels))
