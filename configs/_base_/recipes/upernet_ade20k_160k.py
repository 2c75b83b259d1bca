# UPerNet 160k on ADE20K, 512x512 crops: mmseg's ConvNeXt-T UPerNet recipe (the official ConvNeXt one, which SLaK
# copies): auxiliary FCN head on level 2 (weight 0.4), AdamW lr 1e-4 wd 0.05, linear warm-up 1500 iters then poly to
# 160k, slide test 512 stride 341, AMP, 2 images x 8 GPUs, stage-wise lr decay 0.9 (num_layers=6, i.e. 8 ids)
# through BackboneLayerDecayOptimizerConstructor (any backbone with get_layer_depth; mmseg's constructor reads
# ConvNeXt's parameter names only). A model config adds the backbone.
_base_ = ['mmseg::convnext/convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py', '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

optim_wrapper = dict(constructor='BackboneLayerDecayOptimizerConstructor',
                     paramwise_cfg=dict(_delete_=True, decay_rate=0.9, decay_type='stage_wise'))


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
tta_pipeline = _oriented(_base_.tta_pipeline)
