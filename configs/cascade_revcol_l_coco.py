# RevCol-L (ImageNet-22k) Cascade Mask R-CNN 3x on COCO (official recipe, see cascade_revcol_t_coco.py), lr 1e-4.
# Official: 55.9 AP box / 48.4 AP mask.
_base_ = ['./_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py', './_base_/backbones/revcol_l.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, kernel_size=3, reversible=False),
             neck=dict(in_channels=_base_.backbone_channels))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
