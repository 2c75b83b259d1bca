# SLaK-T UPerNet 160k on ADE20K, 512x512: the official SLaK segmentation recipe, a copy of ConvNeXt's
# (_base_/recipes/upernet_ade20k_160k.py: mmseg's ConvNeXt UPerNet, AdamW lr 1e-4 wd 0.05, warm-up 1500 iters then
# poly to 160k, slide test 512 stride 341, AMP, 2 images x 8 GPUs, stage-wise lr decay 0.9) with the SLaK-T
# fragment (drop path 0.4) and its pre-trained sparse pattern kept fixed. Official: 47.6 mIoU.
_base_ = ['../_base_/recipes/upernet_ade20k_160k.py', '../_base_/backbones/slak_t.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True), decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
custom_hooks = [dict(type='DynamicSparsityHook', fixed=True, prefix='backbone.')]
