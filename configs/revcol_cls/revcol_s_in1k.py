# RevCol-S ImageNet-1k pre-training (official revcol_small_1k.yaml: drop path 0.3, no gradient clipping). 83.5 top-1.
_base_ = './_base_/revcol_cls_in1k.py'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3), head=dict(in_channels=512))
