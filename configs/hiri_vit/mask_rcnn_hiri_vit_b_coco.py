# Mask R-CNN 1x with HIRI-ViT-B: the recipe of mask_rcnn_hiri_vit_s_coco.py (_base_/recipes/mask_rcnn_coco_1x_1600.py)
# with the B backbone.
_base_ = ['../_base_/recipes/mask_rcnn_coco_1x_1600.py', '../_base_/backbones/hiri_vit_b.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), neck=dict(in_channels=_base_.backbone_channels))
