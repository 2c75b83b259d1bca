# RevCol-S Cascade Mask R-CNN 3x on COCO (official recipe, see cascade_revcol_t_coco.py). Official: 52.6 AP box /
# 45.5 AP mask.
_base_ = ['./_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py', './_base_/backbones/revcol_s.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, kernel_size=3, reversible=False),
             neck=dict(in_channels=_base_.backbone_channels))
