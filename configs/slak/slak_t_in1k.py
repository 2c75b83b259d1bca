# SLaK-T ImageNet-1k pre-training with dynamic sparsity (the official recipe: 300 epochs, AdamW lr 4e-3 for a
# 4096 batch, wd 0.05, drop path 0.1, layer scale 1e-6; --sparse: SNIP init, sparsity 0.4, prune rate 0.3
# cosine-decayed, prune/regrow every 2000 iterations) on mmpretrain's ConvNeXt-T recipe (data, mixup/cutmix,
# label smoothing, schedule). Official: 82.5% top-1, 30M params / 5.0 GFLOPs counted at density 0.6.
_base_ = [
    'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py', '../_base_/runtime/safety.py', '../_base_/backbones/slak_t.py'
]
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

model = dict(
    backbone=dict(
        _base_.backbone,
        _delete_=True,
        drop_path_rate=0.1,
        layer_scale_init_value=1e-6,
        out_indices=(3, ),
        gap_before_final_norm=True,  # the official head: LayerNorm of the pooled stage-4 features
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=None),
    head=dict(in_channels=_base_.backbone_channels[-1]))

# Only the sparsity hook: an EMA of sparse weights is not sparse.
custom_hooks = [
    dict(type='DynamicSparsityHook', sparsity=0.4, init='snip', update_interval=2000, prune_rate=0.3,
         final_prune_rate=0.005)
]


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
