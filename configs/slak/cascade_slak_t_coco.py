# SLaK-T Cascade Mask R-CNN 3x on COCO: the official SLaK detection recipe, a copy of ConvNeXt-T's
# (_base_/recipes/cascade_mask_rcnn_coco_3x.py: GIoU 4conv1fc heads, DETR-style multi-scale 480-800 + crop, AMP,
# 36 epochs (steps 27/33), 2 images x 8 GPUs, AdamW lr 2e-4 wd 0.05) with layer-wise lr decay 0.7 and the SLaK-T
# fragment, its pre-trained sparse pattern kept fixed. Official: 51.3 AP box / 44.3 AP mask (300-epoch SLaK-T).
_base_ = ['../_base_/recipes/cascade_mask_rcnn_coco_3x.py', '../_base_/backbones/slak_t.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), neck=dict(in_channels=_base_.backbone_channels))
optim_wrapper = dict(constructor='BackboneLayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(_delete_=True, decay_rate=0.7, decay_type='layer_wise'))
custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]
