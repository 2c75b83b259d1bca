# Cascade Mask R-CNN 3x with HIRI-ViT-S (paper Sec. 5.2; _base_/recipes/cascade_mask_rcnn_coco_ms3x_1600.py:
# multi-scale training with the shorter side in [960, 1600] (longer <= 2666), test at 1600, AdamW, batch 16
# (8 GPUs x 2), 36 epochs).
_base_ = ['../_base_/recipes/cascade_mask_rcnn_coco_ms3x_1600.py', '../_base_/backbones/hiri_vit_s.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), neck=dict(in_channels=_base_.backbone_channels))
