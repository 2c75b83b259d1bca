# NFNet-F0 RetinaNet 1x on COCO: the zoo's RetinaNet recipe (_base_/recipes/retinanet_coco_1x_adamw.py: mmdet's
# RetinaNet 1x data and schedule, levels at strides 8/16/32 into the FPN, P6/P7 from extra convs, AdamW lr 1e-4 /
# wd 0.05 without weight decay on norms and biases) with the backbone of configs/_base_/backbones/nfnet_f0.py.
_base_ = ['../_base_/recipes/retinanet_coco_1x_adamw.py', '../_base_/backbones/nfnet_f0.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True, out_indices=_base_.backbone.out_indices[-3:]),
             neck=dict(in_channels=_base_.backbone_channels[-3:]))
# Adaptive Gradient Clipping on the backbone only (mmrevcol/engine/agc.py), as NFNets are trained; lambda for a
# small total batch (16): the paper's optimum grows as the batch shrinks (0.01 at 4096).
optim_wrapper = dict(type='AGCOptimWrapper', clip=0.16, exclude=(r'^(?!backbone\.)', ))
