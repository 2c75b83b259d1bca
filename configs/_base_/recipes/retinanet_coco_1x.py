# RetinaNet 1x on COCO: mmdet's ResNet-50 RetinaNet (data, 12 epochs, steps at 8/11, 2 images x 8 GPUs) with the
# Swin/PVT optimizer, AdamW lr 1e-4 wd 0.05, without gradient clipping. The FPN takes three levels (strides 8/16/32)
# from start_level 0; P6/P7 come from extra convs on its input. A model config adds the backbone.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../runtime/safety.py']
custom_imports = dict(imports=['mmrevcol'], allow_failed_imports=False)
default_hooks = _base_.safety_hooks

model = dict(neck=dict(start_level=0, num_outs=5))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05), clip_grad=None)


def _oriented(pipeline):  # the image-orientation policy (docs/contributing.md) on a pipeline of the toolbox
    return [dict(t, color_type='color_ignore_orientation') if t.type == 'LoadImageFromFile' else t for t in pipeline]


train_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.train_dataloader.dataset.pipeline)))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=_oriented(_base_.val_dataloader.dataset.pipeline)))
tta_pipeline = _oriented(_base_.tta_pipeline)
