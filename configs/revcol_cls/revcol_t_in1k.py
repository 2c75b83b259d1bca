# RevCol-T ImageNet-1k pre-training (official revcol_tiny_1k.yaml: drop path 0.1, no gradient clipping). 82.2 top-1.
#   bash tools/dist_train.sh configs/revcol_cls/revcol_t_in1k.py 8
_base_ = './_base_/revcol_cls_in1k.py'
model = dict(backbone=dict(arch='tiny', drop_path_rate=0.1), head=dict(in_channels=512))
