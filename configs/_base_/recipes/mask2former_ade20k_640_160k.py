# Mask2Former 160k on ADE20K, 640x640 crops: mmseg's Mask2Former Swin 640 setting (its pipeline and schedule) with the
# optimizer groups of mask2former_ade20k_160k.py (backbone lr x0.1, no weight decay on norms and query/level
# embeddings; the base's Swin-specific keys dropped). A model config adds the backbone.
_base_ = ['mmseg::mask2former/mask2former_swin-b-in1k-384x384-pre_8xb2-160k_ade20k-640x640.py', '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0, custom_keys={
    'backbone': dict(lr_mult=0.1, decay_mult=1.0), 'query_embed': embed_multi, 'query_feat': embed_multi,
    'level_embed': embed_multi}))


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
tta_pipeline = _oriented(_base_.tta_pipeline)
