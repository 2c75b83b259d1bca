# RetinaNet 1x with HIRI-ViT-S (paper Sec. 5.2): mmdet's RetinaNet 1x (_base_/recipes/retinanet_coco_1x.py) at
# shorter side 1600 (longer <= 2666), with the optimizer of the HIRI-ViT detectors (AdamW lr 1e-4, wd 0.05: the
# Swin/PVT setting the paper follows; no decay on norms and biases), batch 16 (8 GPUs x 2), 12 epochs. The FPN starts
# at stage 3 (stride 16 at 1600 = stride 8 at 800), with two extra levels, as RetinaNet's P3-P7 at the usual scale.
_base_ = ['../_base_/recipes/retinanet_coco_1x.py', '../_base_/backbones/hiri_vit_s.py']
model = dict(backbone=dict(_base_.backbone, _delete_=True),
             neck=dict(in_channels=_base_.backbone_channels, start_level=1, add_extra_convs='on_input', num_outs=5))

scale = (2666, 1600)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),  # the orientation policy (contributing.md)
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=_base_.optim_wrapper.optimizer,
                     paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
