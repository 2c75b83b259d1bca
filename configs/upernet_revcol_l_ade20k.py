# RevCol-L (ImageNet-22k) UPerNet 160k on ADE20K, 640x640 crops (official recipe). Official: 53.4 mIoU ss / 53.7 ms.
# Pipeline/slide test at 640 from mmseg's ConvNeXt-L 640 config.
_base_ = 'mmseg::convnext/convnext-large_upernet_8xb2-amp-160k_ade20k-640x640.py'

custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)

pretrained = 'checkpoints/revcol_large_22k.pth'
channels = [128, 256, 512, 1024]
model = dict(
    backbone=dict(
        _delete_=True,
        type='RevCol',
        arch='large',
        kernel_size=3,
        drop_path_rate=0.3,
        reversible=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=channels, num_classes=150),
    auxiliary_head=dict(in_channels=channels[2], in_index=2, num_classes=150, loss_decode=dict(loss_weight=0.4)))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='RevColLayerDecayOptimizerConstructor',
    optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise'),
    loss_scale='dynamic')
