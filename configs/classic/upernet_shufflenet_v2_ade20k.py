# ShuffleNet V2 1x UPerNet 160k on ADE20K: the zoo's UPerNet recipe (_base_/recipes/upernet_ade20k_160k_adamw.py:
# 512x512 crops, auxiliary FCN head on the stride-16 level, slide test, AdamW lr 6e-5 / wd 0.01 without weight
# decay on norms and biases, AMP) with the backbone of configs/_base_/backbones/shufflenet_v2.py.
_base_ = ['../_base_/recipes/upernet_ade20k_160k_adamw.py', '../_base_/backbones/shufflenet_v2.py']
levels = len(_base_.backbone_channels)  # 3 for the ShuffleNets (no stride-4 stage)
model = dict(backbone=dict(_base_.backbone, _delete_=True),
             decode_head=dict(in_channels=_base_.backbone_channels, in_index=list(range(levels))),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[-2], in_index=levels - 2))
