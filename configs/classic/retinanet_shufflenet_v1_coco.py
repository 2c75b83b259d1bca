# ShuffleNet V1 1x (g=3) RetinaNet 1x on COCO: the recipe of configs/retinanet_revcol_t_coco.py (the base: levels at
# strides 8/16/32 into the FPN, P6/P7 from extra convs, AdamW lr 1e-4 / wd 0.05) with the backbone of
# configs/_base_/backbones/shufflenet_v1.py. RevCol's layer-decay constructor only knows RevCol: plain AdamW, no
# weight decay on norms and biases.
_base_ = ['../retinanet_revcol_t_coco.py', '../_base_/backbones/shufflenet_v1.py']

model = dict(
    backbone=dict(_base_.backbone, _delete_=True, out_indices=_base_.backbone.out_indices[-3:]),
    neck=dict(in_channels=_base_.backbone_channels[-3:]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=_base_.optim_wrapper.optimizer,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=None)
