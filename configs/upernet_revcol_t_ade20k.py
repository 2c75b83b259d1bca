# RevCol-T UPerNet 160k on ADE20K, 512x512 crops: the official RevCol recipe (Segmentation/ of
# megvii-research/RevCol) on mmseg 1.x. Data pipeline, UPerNet + auxiliary FCN head (on level 2, weight 0.4),
# slide test, 160k schedule and AMP come from mmseg's ConvNeXt UPerNet config. Official: 47.4 mIoU ss / 47.6 ms.
_base_ = 'mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py'

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

pretrained = 'checkpoints/revcol_tiny_1k.pth'
channels = [64, 128, 256, 512]
model = dict(
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch='tiny',
        kernel_size=3,
        drop_path_rate=0.3,
        reversible=False,  # --cfg-options model.backbone.reversible=True: reversible (memory-saving) training
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=channels, num_classes=150),
    auxiliary_head=dict(in_channels=channels[2], in_index=2, num_classes=150, loss_decode=dict(loss_weight=0.4)))

# AdamW wd 0.01, lr 6e-5, layer decay 1.0 (= none, but the constructor still exempts 1-D params, biases and
# alphas from weight decay), linear warm-up 1500 iters then poly (power 1) to 160k (from the base).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='RevColLayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(decay_rate=1.0, decay_type='layer_wise'),
    loss_scale='dynamic')
