# UPerNet 160k on ADE20K, 640x640 crops, the official RevCol-L segmentation recipe: mmseg's ConvNeXt-L 640 UPerNet
# (pipeline at 2560x640, slide test 640 stride 426, auxiliary FCN head on level 2, 160k poly schedule, AMP, 2 images
# x 8 GPUs) with the optimizer of the RevCol recipe (upernet_ade20k_160k_revcol.py) at lr 4e-5 and layer-wise lr
# decay 0.9. A model config adds the backbone.
_base_ = ['mmseg::convnext/convnext-large_upernet_8xb2-amp-160k_ade20k-640x640.py', '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

optim_wrapper = dict(_delete_=True, type='AmpOptimWrapper', constructor='RevColLayerDecayOptimizerConstructor',
                     optimizer=dict(type='AdamW', lr=4e-5, betas=(0.9, 0.999), weight_decay=0.01),
                     paramwise_cfg=dict(decay_rate=0.9, decay_type='layer_wise'), loss_scale='dynamic')


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
tta_pipeline = _oriented(_base_.tta_pipeline)
