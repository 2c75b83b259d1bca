# ConvNeXt-T RetinaNet 1x on COCO with the very recipe of configs/retinanet_revcol_t_coco.py
# (_base_/recipes/retinanet_coco_1x.py): levels 1-3 (strides 8/16/32) into the FPN, AdamW lr 1e-4 / wd 0.05,
# layer-wise lr decay 0.85, drop path 0.2; only the backbone differs (configs/_base_/backbones/convnext_t.py), with
# mmdet's ConvNeXt layer-decay constructor (num_layers=6: ConvNeXt-T's official depth ids).
_base_ = ['../_base_/recipes/retinanet_coco_1x.py', '../_base_/backbones/convnext_t.py']
custom_imports = dict(imports=['mmrevcol', 'mmpretrain.models'], allow_failed_imports=False)
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.2, out_indices=(1, 2, 3)),
             neck=dict(in_channels=_base_.backbone_channels[1:]))
optim_wrapper = dict(constructor='LearningRateDecayOptimizerConstructor',
                     paramwise_cfg=dict(decay_rate=0.85, decay_type='layer_wise', num_layers=6))
