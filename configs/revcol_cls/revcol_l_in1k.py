# RevCol-L ImageNet-1k pre-training. The official RevCol-L is pre-trained on ImageNet-22k only (no 1k recipe is
# published); this applies the 1k recipe of RevCol-B with the paper's drop path for L (0.5).
_base_ = './_base_/revcol_cls_in1k.py'
model = dict(backbone=dict(arch='large', drop_path_rate=0.5), head=dict(in_channels=1024))
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-8, by_epoch=True, begin=20, convert_to_iter_based=True),
]
