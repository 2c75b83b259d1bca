# ConvNeXt-T UPerNet 160k on ADE20K with the very recipe of configs/upernet_revcol_t_ade20k.py
# (_base_/recipes/upernet_ade20k_160k_revcol.py): same pipeline, heads, 512x512 crops, slide test, AdamW lr 6e-5 /
# wd 0.01, layer decay 1.0 (1-D params without weight decay), drop path 0.3, AMP; only the backbone differs
# (configs/_base_/backbones/convnext_t.py), with mmseg's ConvNeXt LearningRateDecayOptimizerConstructor for the same
# decay rule (num_layers=6: ConvNeXt-T's official depth ids).
# Published (ConvNeXt paper, its own recipe: lr 1e-4, drop path 0.4): 46.0 mIoU single-scale / 46.7 multi-scale.
_base_ = ['../_base_/recipes/upernet_ade20k_160k_revcol.py', '../_base_/backbones/convnext_t.py']
custom_imports = dict(imports=['mmrevcol', 'mmpretrain.models'], allow_failed_imports=False)
model = dict(backbone=dict(_base_.backbone, _delete_=True, drop_path_rate=0.3),
             decode_head=dict(in_channels=_base_.backbone_channels),
             auxiliary_head=dict(in_channels=_base_.backbone_channels[2]))
optim_wrapper = dict(constructor='LearningRateDecayOptimizerConstructor', paramwise_cfg=dict(num_layers=6))
