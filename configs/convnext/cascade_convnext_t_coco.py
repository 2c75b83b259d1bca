# ConvNeXt-T Cascade Mask R-CNN 3x on COCO with the very recipe of configs/cascade_revcol_t_coco.py
# (_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py): same data pipeline, heads, schedule, AdamW lr 2e-4 / wd 0.05,
# layer-wise lr decay 0.85, drop path 0.3, AMP; only the backbone differs (configs/_base_/backbones/convnext_t.py).
# The decay runs through mmdet's ConvNeXt LearningRateDecayOptimizerConstructor, as mmdet's ConvNeXt configs do
# (BackboneLayerDecayOptimizerConstructor would take ConvNeXt too; this keeps the published depth map).
# Published (ConvNeXt paper, its own recipe with drop path 0.4 / decay 0.7): 50.4 AP box / 43.7 AP mask.
_base_ = ['../_base_/recipes/cascade_mask_rcnn_coco_3x_revcol.py', '../_base_/backbones/convnext_t.py']
custom_imports = dict(imports=['mmrevcol', 'mmpretrain.models'], allow_failed_imports=False)
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.3),
             neck=dict(in_channels=_base_.backbone_channels))
optim_wrapper = dict(constructor='LearningRateDecayOptimizerConstructor', paramwise_cfg=dict(num_layers=6))
