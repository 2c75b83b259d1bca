# SLaK-T RetinaNet 1x on COCO (not an official SLaK recipe: mmdet's Swin/PVT RetinaNet setting,
# _base_/recipes/retinanet_coco_1x.py, AdamW with SLaK's stage-wise lr decay 0.9). Stages 1-3 (strides 8/16/32) feed
# the FPN; P6/P7 come from extra convs. The pre-trained sparse pattern is kept fixed.
_base_ = ['../_base_/recipes/retinanet_coco_1x.py', '../_base_/backbones/slak_t.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.2, out_indices=(1, 2, 3)),
             neck=dict(in_channels=_base_.backbone_channels[1:]))
optim_wrapper = dict(constructor='BackboneLayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))
custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]
