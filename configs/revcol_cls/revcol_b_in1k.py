# RevCol-B ImageNet-1k pre-training (official revcol_base_1k.yaml: drop path 0.4, clip grad 5, min lr 1e-8). 84.1.
_base_ = './_base_/revcol_cls_in1k.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.4), head=dict(in_channels=576))
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-8, by_epoch=True, begin=20, convert_to_iter_based=True),
]
