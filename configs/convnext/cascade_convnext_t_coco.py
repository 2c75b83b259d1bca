# ConvNeXt-T Cascade Mask R-CNN 3x on COCO with the very recipe of configs/cascade_revcol_t_coco.py (the base):
# same data pipeline, heads, schedule, AdamW lr 2e-4 / wd 0.05, layer-wise lr decay 0.85, drop path 0.3, AMP; only
# the backbone differs (configs/_base_/backbones/convnext_t.py), and with it the layer-decay depth map: mmdet's
# ConvNeXt LearningRateDecayOptimizerConstructor (RevCol's constructor only knows RevCol).
# Published (ConvNeXt paper, its own recipe with drop path 0.4 / decay 0.7): 50.4 AP box / 43.7 AP mask.
_base_ = ['../cascade_revcol_t_coco.py', '../_base_/backbones/convnext_t.py']

custom_imports = dict(imports=['mmrevcol', 'mmpretrain.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=_base_.model.backbone.drop_path_rate),
    neck=dict(in_channels=_base_.backbone_channels))
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(_base_.backbone_layer_decay, decay_rate=_base_.optim_wrapper.paramwise_cfg.decay_rate))
