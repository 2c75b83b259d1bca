# NFNet-F0 UPerNet 160k on ADE20K: the recipe of configs/upernet_revcol_t_ade20k.py (the base: 512x512 crops,
# auxiliary FCN head on the stride-16 level, slide test, AdamW lr 6e-5 / wd 0.01, AMP) with the backbone of
# configs/_base_/backbones/nfnet_f0.py. Plain AdamW (RevCol's layer-decay constructor only knows RevCol; its decay
# rate there is 1.0 anyway), no weight decay on norms and biases. Adaptive Gradient Clipping on the backbone
# (mmrevcol/engine/agc.py, settings in the fragment), as NFNets are trained.
_base_ = ['../upernet_revcol_t_ade20k.py', '../_base_/backbones/nfnet_f0.py']

levels = len(_base_.backbone_channels)
model = dict(
    backbone=dict(_base_.backbone, _delete_=True),
    decode_head=dict(in_channels=_base_.backbone_channels, in_index=list(range(levels))),
    auxiliary_head=dict(in_channels=_base_.backbone_channels[levels - 2], in_index=levels - 2))
optim_wrapper = dict(
    _delete_=True,
    type='AGCAmpOptimWrapper',
    **_base_.backbone_agc,
    optimizer=_base_.optim_wrapper.optimizer,
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    loss_scale='dynamic')
