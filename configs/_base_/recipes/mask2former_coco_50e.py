# Mask2Former (instance segmentation) 50 epochs on COCO, large-scale jitter at 1024: mmdet's Mask2Former setting
# (AdamW lr 1e-4 wd 0.05, backbone lr x0.1, 2 images x 8 GPUs). A model config adds the backbone.
_base_ = ['mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
