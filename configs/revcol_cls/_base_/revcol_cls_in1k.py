# RevCol ImageNet-1k pre-training with intermediate supervision: the official recipe (megvii-research/RevCol
# configs/revcol_*_1k.yaml, paper sec. 2.3 / appendix D). 300 epochs, AdamW lr 1e-3 at batch 1024 (8 x 128), wd 0.05,
# 20 warm-up epochs from 1e-5, cosine, label smoothing 0.1, RandAugment m9-mstd0.5, random erasing 0.25, Mixup 0.8 /
# CutMix 1.0, EMA 0.9999, AMP, reversible columns. The size configs set arch, drop path, head width and clipping.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    '../../_base_/runtime/safety.py',
]
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

model = dict(
    type='RevColClassifier',
    backbone=dict(type='RevCol', arch='tiny', drop_path_rate=0.1, reversible=True, out_indices=(3, )),
    head=dict(
        type='RevColClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    intermediate_supervision=True,
    bce_coef=3.0,  # official FCOE: decoder weights 3, 2, 1
    ce_coef=0.7,  # official CCOE: classifier weights 0.175, 0.35, 0.525, then 1.0
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(batch_size=128, dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))

optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # official: no weight decay for 1-D parameters and biases; alpha neither (it scales the reversible shortcut)
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0, custom_keys={'.alpha': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=20, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=20, convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=1024)

custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]  # official decay 0.9999 per step
