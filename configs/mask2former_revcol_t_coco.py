# RevCol-T Mask2Former (instance segmentation) 50e on COCO, LSJ 1024 (not an official RevCol recipe: mmdet's
# Mask2Former setting, _base_/recipes/mask2former_coco_50e.py).
_base_ = ['./_base_/recipes/mask2former_coco_50e.py', './_base_/backbones/revcol_t.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), panoptic_head=dict(in_channels=_base_.backbone_channels))
