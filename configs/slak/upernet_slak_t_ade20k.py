# SLaK-T UPerNet 160k on ADE20K, 512x512: the official SLaK segmentation recipe (a copy of ConvNeXt's) on
# mmseg 1.x. From mmseg's ConvNeXt UPerNet config: auxiliary FCN head on stage 2 (weight 0.4), AdamW lr 1e-4
# wd 0.05, warm-up 1500 iters then poly to 160k, slide test 512 stride 341, AMP, 2 images x 8 GPUs.
# Stage-wise lr decay 0.9 (official num_layers=6, i.e. 8 ids). Official: 47.6 mIoU.
_base_ = [
    'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py',
    '../_base_/backbones/slak_t.py'
]

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

model = dict(
    backbone=dict(_base_.slak_backbone, drop_path_rate=0.4),
    decode_head=dict(in_channels=_base_.slak_channels, num_classes=150),
    auxiliary_head=dict(in_channels=_base_.slak_channels[2], in_index=2, num_classes=150))

optim_wrapper = dict(
    constructor='BackboneLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True, decay_rate=0.9, decay_type='stage_wise'))

custom_hooks = [_base_.slak_fixed_mask_hook]
