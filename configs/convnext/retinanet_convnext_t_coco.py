# ConvNeXt-T RetinaNet 1x on COCO with the very recipe of configs/retinanet_revcol_t_coco.py (the base): levels 1-3
# (strides 8/16/32) into the FPN, AdamW lr 1e-4 / wd 0.05, layer-wise lr decay 0.85, drop path 0.2; only the
# backbone differs (configs/_base_/backbones/convnext_t.py), with mmdet's ConvNeXt layer-decay constructor.
_base_ = ['../retinanet_revcol_t_coco.py', '../_base_/backbones/convnext_t.py']

custom_imports = dict(imports=['mmrevcol', 'mmpretrain.models'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=_base_.model.backbone.drop_path_rate,
                  out_indices=_base_.model.backbone.out_indices),
    neck=dict(in_channels=[_base_.backbone_channels[i] for i in _base_.model.backbone.out_indices]))
optim_wrapper = dict(
    constructor='LearningRateDecayOptimizerConstructor',
    paramwise_cfg=dict(_base_.backbone_layer_decay, decay_rate=_base_.optim_wrapper.paramwise_cfg.decay_rate))
