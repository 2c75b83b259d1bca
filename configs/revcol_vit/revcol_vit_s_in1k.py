# RevCol-ViT-S ImageNet-1k (paper appendix B.1): C=224, blocks (2, 2, 2, 2), 4 heads, 4 columns, stride-16 patches.
# Training: the RevCol ImageNet recipe (../revcol_cls/_base_/revcol_cls_in1k.py: AdamW lr 1e-3 @ 1024, 300 epochs,
# label smoothing, RandAugment, Mixup/CutMix, EMA, AMP) without intermediate supervision, as the paper.
_base_ = ['../revcol_cls/_base_/revcol_cls_in1k.py', '../_base_/backbones/revcol_vit_s.py']

model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(_base_.backbone, img_size=224, out_indices=(3, )),
    head=dict(
        type='RevColClsHead',
        num_classes=1000,
        in_channels=_base_.backbone_channels[-1],
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
optim_wrapper = dict(
    clip_grad=dict(max_norm=5.0),
    paramwise_cfg=dict(custom_keys={'.alpha': dict(decay_mult=0.0), '.pos_embed': dict(decay_mult=0.0),
                                    '.logit_scale': dict(decay_mult=0.0)}))
