# RevCol-B (ImageNet-1k) Cascade Mask R-CNN 3x on COCO (official recipe, see cascade_revcol_t_coco.py), layer decay
# 0.9. Official: 53.0 AP box / 45.9 AP mask. With the ImageNet-22k checkpoint (revcol_base_22k.pth) the official
# recipe uses lr 1e-4 (55.0 / 47.5).
_base_ = ['./_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py', './_base_/backbones/revcol_b.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, kernel_size=3, reversible=False),
             neck=dict(in_channels=_base_.backbone_channels))
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.9))
