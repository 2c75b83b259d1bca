# RevCol-T Cascade Mask R-CNN 3x on COCO: the official RevCol recipe (Detection/ of megvii-research/RevCol) on
# mmdet 3.x (_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py: mmdet's ConvNeXt 3x data and schedule, RevCol's
# GIoU heads and layer-wise lr decay 0.85, AdamW lr 2e-4, AMP, 2 images x 8 GPUs) with the RevCol-T fragment.
# Official result: 50.8 AP box / 44.0 AP mask (ImageNet-1k pretrained RevCol-T).
_base_ = ['./_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py', './_base_/backbones/revcol_t.py']
model = dict(
    backbone=dict(_base_.backbone, _delete_=True, kernel_size=3,
                  reversible=False),  # --cfg-options model.backbone.reversible=True: reversible (memory-saving) training
    neck=dict(in_channels=_base_.backbone_channels))
